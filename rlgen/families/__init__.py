"""One folder per model family: its config class and record (`__init__`: cheap to import) and its
implementation (`train`: what builds, trains, evaluates and exports it; imported when it runs)."""
