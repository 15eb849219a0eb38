"""Leaderboard, plots and a self-contained HTML report from the per-method outputs."""
