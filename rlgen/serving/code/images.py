"""The MLflow model from code of rlgen's `ImageGenerator` interface: MLflow runs this file to build it, no pickle."""

from mlflow.models import set_model

from rlgen.serving.interfaces import ImageGenerator

set_model(ImageGenerator())
