"""A fresh process with nothing but MLflow: load each registered champion with mlflow.pyfunc and answer a request.

python ask_mlflow_model.py REQUESTS.json ANSWERS.json    (MLFLOW_TRACKING_URI names the store)
"""

import json
import sys

import mlflow
import numpy as np
import pandas as pd

requests = json.load(open(sys.argv[1]))
answers = {}
for name, request in requests.items():
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    if "inputs" in request:
        answer = model.predict(np.asarray(request["inputs"], dtype=np.float32))
    else:
        answer = model.predict(
            pd.DataFrame(request["dataframe_split"]["data"], columns=request["dataframe_split"]["columns"])
        )
    answers[name] = answer.to_dict("records") if isinstance(answer, pd.DataFrame) else np.asarray(answer).tolist()
json.dump(answers, open(sys.argv[2], "w"))
