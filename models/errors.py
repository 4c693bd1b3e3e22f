"""Errors the models raise (no torch import here: the CLI reads them without loading torch)."""


class TrainingDiverged(RuntimeError):
    """Training cannot go on from here: the same config, data and seeds would fail the same way again."""


class NonFiniteLoss(TrainingDiverged):
    """A training statistic (loss, gradient norm, ...) became NaN or infinite; the message names it and the step."""
