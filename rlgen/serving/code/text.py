"""The MLflow model from code of rlgen's `Text` interface: MLflow runs this file to build the model, no pickle."""

from mlflow.models import set_model

from rlgen.serving.interfaces import Text

set_model(Text())
