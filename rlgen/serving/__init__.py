"""rlgen's models as MLflow models: pyfunc interfaces defined from code (no pickle), logged as MLflow 3
LoggedModels with a signature and an input example, loadable by `mlflow.pyfunc.load_model` and servable by
`mlflow models serve`."""
