"""Export: TorchScript files and `.pt2` programs with rlgen's metadata, checked against the eager model in a
fresh process (`parity`), and the one export routine every family goes through (`checked`)."""
