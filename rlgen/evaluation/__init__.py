"""Evaluation: the task body every family shares, and the image models' LeNet evaluator and sample metrics."""
