"""The code files of rlgen's MLflow models from code, one per interface (rlgen.serving.interfaces)."""
