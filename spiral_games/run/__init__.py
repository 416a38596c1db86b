"""A training run: the loop, checkpoints and per-step metrics."""
