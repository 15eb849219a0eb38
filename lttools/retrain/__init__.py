"""Stage 2: classifier re-training on cached features (registry, pieces, batched trainer)."""
