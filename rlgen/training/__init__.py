"""Training: the one loop driver every trainer runs under, and the training task's body."""
