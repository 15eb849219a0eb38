"""lttools: classifier re-training for long-tailed recognition on cached features."""

__version__ = "0.1.0"
