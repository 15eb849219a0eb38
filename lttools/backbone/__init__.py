"""Stage 1: the backbone. Its recipe (config), the fast training loop (train), the paper's
DataLoader path kept for comparison (reference), resumable checkpoints (checkpoint), torchrun
(distributed), training curves (training_log), evaluation and the saved model (saved)."""
