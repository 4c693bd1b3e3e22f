"""The MLflow model from code of rlgen's `Energy` interface: MLflow runs this file to build the model, no pickle."""

from mlflow.models import set_model

from rlgen.serving.interfaces import Energy

set_model(Energy())
