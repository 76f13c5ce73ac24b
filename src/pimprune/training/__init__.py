"""Training: data sets, models, training loops, checkpoints and the (distributed) runtime."""
