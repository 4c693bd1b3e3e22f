"""Checkpoints and the stop requests that trigger them.

- `io`: checkpoint files, written atomically and read with weights_only=True, and where a run keeps its own.
- `lock`: the run lock, so that one process at a time trains, resumes or syncs a run.
- `stop`: per-invocation stop requests, set by SIGINT / SIGTERM, checked by the training-loop driver.
"""
