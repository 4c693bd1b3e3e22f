"""Checkpoints and the stop requests that trigger them.

- `io`: checkpoint files, written atomically and read with weights_only=True, and where a run keeps its own.
- `stop`: per-invocation stop requests, set by SIGINT / SIGTERM, checked by the training-loop driver.
"""
