"""Datasets, long-tailed subsets, the validation split, batched augmentation."""
