"""Every family's registered version is an MLflow model that MLflow itself loads and serves: in a fresh process
through `mlflow.pyfunc.load_model("models:/NAME@champion")` with pickle deserialization disallowed, and over REST
through `mlflow models serve`, its bad requests answered 4xx with our message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import model_files
from mlflow.tracking import MlflowClient
from servers import free_port, wait_healthy

from rlgen.registry import family

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = str(SHARED / "mnist" / "raw")
IMAGES = {"data_dir": MNIST, "max_steps": 3, "epochs": 1, "batch_size": 32, "fid_samples": 100, "lenet_epochs": 1}
TINY: dict[str, dict[str, Any]] = {  # family -> its config: a few steps each
    "dqn": {"total_steps": 300, "learning_starts": 100, "train_every": 100, "gradient_steps": 2, "eval_episodes": 2,
            "val_episodes": 2, "eval_every": 0},
    "vae": {**IMAGES, "variant": "cvae", "iw_samples": 2, "iw_images": 10},
    "gan": {**IMAGES, "grid_size": 16},
    "descriptor": {**IMAGES, "langevin_steps": 2, "grid_size": 16},
    "generator": {**IMAGES, "infer_steps": 1, "grid_size": 16, "recon_images": 20},
    "coop": {**IMAGES, "langevin_steps": 2, "grid_size": 16},
    "lm": {"corpus_path": str(SHARED / "tinyshakespeare" / "input.txt"), "hidden": 16, "embedding": 16, "layers": 1,
           "batch_size": 4, "bptt": 16, "max_steps": 4, "eval_every": 4, "sample_tokens": 10},
}  # fmt: skip
ASK = Path(__file__).with_name("ask_mlflow_model.py")  # the fresh process: nothing but mlflow.pyfunc

pytestmark = pytest.mark.skipif(not Path(MNIST).is_dir(), reason=f"the offline data are not in {SHARED}")


class Store(NamedTuple):
    home: Path
    uri: str  # the embedded store's tracking URI
    names: dict[str, str]  # family -> registered name


@pytest.fixture(scope="module")
def store(prefect_server: str, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[Store]:
    """One store with a tiny trained model of every family, registered as its champion."""
    from flows.models import flow_for

    home = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLGEN_HOME", str(home))
        patch.setenv("RLGEN_DATA_DIR", str(shared_data))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        names = {}
        for name, keys in TINY.items():
            result = flow_for(name)(family(name).config.model_validate(keys))
            names[name] = result.model.split("/")[0]
        yield Store(home, f"sqlite:///{home / 'mlruns' / 'mlflow.db'}", names)


def requests(names: dict[str, str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """One request per model, in `mlflow models serve`'s JSON form, with the model's interface."""
    asked = {
        "dqn": {"inputs": np.linspace(-0.05, 0.05, 12, dtype=np.float32).reshape(3, 4).tolist()},
        "vae": {"dataframe_split": {"columns": ["seed", "label"], "data": [[0, 3], [1, 7], [0, 3]]}},
        "gan": {"dataframe_split": {"columns": ["seed"], "data": [[5], [6]]}},
        "descriptor": {"inputs": np.linspace(0, 1, 2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28).tolist()},
        "generator": {"dataframe_split": {"columns": ["seed"], "data": [[1], [2]]}},
        "coop": {"dataframe_split": {"columns": ["seed"], "data": [[1]]}},
        "lm": {"dataframe_split": {"columns": ["prompt", "tokens", "seed"], "data": [["ROMEO:", 12, 3]]}},
    }
    return {names[key]: (family(key).consumer, request) for key, request in asked.items()}


def in_process(name: str, interface: str, request: dict[str, Any]) -> Any:
    """What the model answers in this process, loaded the way every rlgen command loads it."""
    from rlgen.serving.load import load

    if "inputs" in request:
        data: Any = np.asarray(request["inputs"], dtype=np.float32)
    else:
        data = pd.DataFrame(request["dataframe_split"]["data"], columns=request["dataframe_split"]["columns"])
    return load(name, interface).predict(data)


def same(here: Any, there: Any, name: str) -> None:
    """The same answer: the same text and token ids for the same seed, numbers within 1e-5, the same pixels."""
    if isinstance(here, pd.DataFrame):
        assert here.to_dict("records") == there, name
    else:
        np.testing.assert_allclose(np.asarray(there), np.asarray(here), rtol=0, atol=1e-5, err_msg=name)


def test_every_family_loads_in_a_fresh_process_with_mlflow_alone(store: Store, tmp_path: Path) -> None:
    asked = requests(store.names)
    request_file = tmp_path / "requests.json"
    request_file.write_text(json.dumps({name: request for name, (_, request) in asked.items()}))
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    done = subprocess.run([sys.executable, str(ASK), str(request_file), str(tmp_path / "answers.json")], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads((tmp_path / "answers.json").read_text())
    os.environ["MLFLOW_TRACKING_URI"] = store.uri
    try:
        for name, (interface, request) in asked.items():
            same(in_process(name, interface, request), answers[name], name)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    images = np.asarray(answers[store.names["vae"]])
    assert images.dtype.kind in "iu" or images.max() > 1  # uint8 pixels
    assert np.array_equal(images[0], images[2]) and not np.array_equal(images[0], images[1])  # a seed is an image
    client = MlflowClient(tracking_uri=store.uri)
    for name in store.names.values():
        files = model_files(client, name)
        assert "MLmodel" in files and not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
        version = client.get_model_version(name, "1")
        assert client.get_logged_model(version.source.removeprefix("models:/")).source_run_id == version.run_id


@pytest.fixture(scope="module")
def served(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`mlflow models serve` of one model of each interface on 127.0.0.1; yields name -> base URL."""
    logs = tmp_path_factory.mktemp("serve")
    servers, urls = [], {}
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # MLflow runs `uvicorn`
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.uri, "PATH": path}
    try:
        ports: set[int] = set()
        while len(ports) < 4:  # free_port() may hand out one port twice before a server binds it
            ports.add(free_port())
        for key, port in zip(("dqn", "gan", "descriptor", "lm"), sorted(ports), strict=True):
            name = store.names[key]
            log = logs / f"{name}.log"
            mlflow = str(Path(sys.executable).with_name("mlflow"))
            command = [mlflow, "models", "serve", "-m", f"models:/{name}@champion", "--env-manager", "local",
                       "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
            with log.open("w") as out:
                servers.append(
                    subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                )
            urls[name] = f"http://127.0.0.1:{port}"
        for (name, url), server in zip(urls.items(), servers, strict=True):
            wait_healthy(f"{url}/ping", server, logs / f"{name}.log", timeout=180)
        yield urls
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


BAD = {  # family -> (request, what the message says): wrong shape, wrong dtype, unknown label, too many, too long
    "dqn": [({"inputs": [[0.0, 0.1, 0.2]]}, "shape"), ({"inputs": [["a", "b", "c", "d"]]}, "")],
    "gan": [({"dataframe_split": {"columns": ["seed", "label"], "data": [[1, 3]]}}, "unconditional"),
            ({"dataframe_split": {"columns": ["seed"], "data": [[i] for i in range(1025)]}}, "at most 1024")],
    "descriptor": [({"inputs": [[0.5] * 10]}, "shape")],
    "lm": [({"dataframe_split": {"columns": ["prompt", "tokens"], "data": [["ROMEO:", 10**5]]}}, "ask for 0 to 10000"),
           ({"dataframe_split": {"columns": ["prompt"], "data": [["€€€"]]}}, "not in the vocabulary")],
}  # fmt: skip


def test_mlflow_models_serve_answers_good_and_bad_requests(store: Store, served: dict[str, str]) -> None:
    asked = requests(store.names)
    os.environ["MLFLOW_TRACKING_URI"] = store.uri
    try:
        for name, url in served.items():
            interface, request = asked[name]
            response = httpx.post(f"{url}/invocations", json=request, timeout=60)
            assert response.status_code == 200, response.text
            same(in_process(name, interface, request), response.json()["predictions"], name)
    finally:
        del os.environ["MLFLOW_TRACKING_URI"]
    for key, cases in BAD.items():
        url = served[store.names[key]]
        for request, says in cases:
            response = httpx.post(f"{url}/invocations", json=request, timeout=60)
            assert 400 <= response.status_code < 500, (key, request, response.status_code, response.text[:500])
            body = response.json()
            assert "stack_trace" not in body and says in body["message"], (key, body)


def test_rlgen_serve_model_serves_on_localhost_and_prints_a_request_that_works(store: Store, tmp_path: Path) -> None:
    name, port = store.names["dqn"], free_port()
    env = {**os.environ, "RLGEN_HOME": str(store.home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "serve-model.log"
    rlgen = str(Path(sys.executable).with_name("rlgen"))
    with log.open("w") as out:
        server = subprocess.Popen([rlgen, "serve-model", name, "--port", str(port)], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}/ping", server, log, timeout=180)
        curl = next(line for line in log.read_text().splitlines() if line.startswith("curl "))
        assert f"http://127.0.0.1:{port}/invocations" in curl
        body = json.loads(curl.split(" -d '", 1)[1].rstrip("'"))  # the printed request, sent as printed
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
        assert response.status_code == 200 and len(response.json()["predictions"]) == len(body["inputs"])
        (served,) = [line for line in ps_lines() if "models serve" in line and f"--port {port}" in line]
        assert "--host 127.0.0.1" in served and store.uri not in served  # the store goes through the environment
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def ps_lines() -> list[str]:
    """Every process's command line, as `ps` shows them to anyone on the machine."""
    return subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True, check=True).stdout.splitlines()


def test_a_version_registered_before_mlflow_models_still_loads(store: Store, tmp_path: Path) -> None:
    """Earlier rlgen registered a bare folder (model/model.pt): the rlgen commands load its TorchScript file."""
    from mlflow import artifacts

    from rlgen import tracking
    from rlgen.serving.load import load

    name = store.names["gan"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RLGEN_HOME", str(store.home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        answer = load(name, "sample").predict(pd.DataFrame({"seed": [3, 4]}))  # the MLflow model's
        folder = Path(artifacts.download_artifacts(artifact_uri=f"models:/{name}/1", dst_path=str(tmp_path)))
        with tracking.run("rlgen", "old-style") as run_id:
            tracking.log_artifact(run_id, folder / "artifacts" / "model.pt", "model")
            old = tracking.register_model(run_id, "model", name)  # what rlgen did before: a bare folder
        loaded = load(f"{name}/{old.version}", "sample")
        assert loaded.source.endswith("model.pt")
        np.testing.assert_array_equal(loaded.predict(pd.DataFrame({"seed": [3, 4]})), answer)


DOCS = Path(__file__).resolve().parents[1] / "docs" / "serving.md"


def test_the_serving_docs_examples_run(store: Store, served: dict[str, str]) -> None:
    import re

    text = DOCS.read_text()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store.uri)
        for code in re.findall(r"```python\n(.*?)```", text, flags=re.S):
            exec(compile(code, str(DOCS), "exec"), {})  # the docs' own example, against the test store
    bodies = [json.loads(body) for body in re.findall(r"```json\n(.*?)```", text, flags=re.S)]
    servers = {
        "inputs": served[store.names["dqn"]],
        "seed": served[store.names["gan"]],
        "prompt": served[store.names["lm"]],
    }
    assert len(bodies) == 3
    for body in bodies:
        key = "inputs" if "inputs" in body else body["dataframe_split"]["columns"][0]
        response = httpx.post(f"{servers[key]}/invocations", json=body, timeout=60)
        assert response.status_code == 200, (body, response.text)
    curl = re.search(r"curl -s (\S+) .* -d '(.*)'", text)
    assert curl and json.loads(curl.group(2))["inputs"]
