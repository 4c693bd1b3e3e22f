"""The pipeline's branches on local Dask and Ray clusters (`--set runner=dask|ray`), and one branch per GPU.

The cluster tests run the real `rlgen` console script with the two cheapest branches (DQN and the
character LSTM, tiny budgets, no image data prep) on a local cluster of two one-thread worker processes:
Dask with Prefect's embedded server (the workers must be told its temporary URL), Ray against a Prefect
server. The GPU tests need no GPU: they hold the Prefect concurrency limits that a CUDA branch takes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from test_flow_pipeline import SHARED, TINY

from rlgen.config import ConfigError, config_from_overrides
from rlgen.pipeline.config import PipelineConfig

OVERRIDES = {
    "dqn": TINY["dqn"],
    "lm-char": {
        "hidden": 16,
        "embedding": 16,
        "layers": 1,
        "batch_size": 4,
        "max_steps": 6,
        "eval_every": 3,
        "eval_batch_size": 64,
        "sample_tokens": 20,
        "log_every": 2,
        "bptt": 16,
    },
}
ARGS = [
    "run",
    "pipeline",
    "--set",
    "models=dqn,lm-char",
    "--set",
    "concurrency=2",
    "--set",
    f"data_root={SHARED}",
    "--set",
    f"overrides={json.dumps(OVERRIDES)}",
]

needs_corpus = pytest.mark.skipif(
    not (SHARED / "tinyshakespeare" / "input.txt").is_file(), reason=f"the offline data are not at {SHARED}"
)


def branches_ran_on_workers(store: Path) -> dict[str, Run]:
    """Check that every run FINISHED and each branch ran in its own worker process, at once; return the branches' flow
    runs."""
    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    (pipeline,) = [r for r in runs if r.data.tags["rlgen.family"] == "pipeline"]
    flows = {r.data.tags["rlgen.family"]: r for r in runs if r.data.tags["rlgen.role"] == "flow" and r is not pipeline}
    assert sorted(flows) == ["dqn", "lm"]
    for run in flows.values():
        assert run.data.tags["mlflow.parentRunId"] == pipeline.info.run_id and run.data.tags["prefect.task_run_id"]
        (train,) = [
            r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == run.info.run_id and r.data.tags["rlgen.role"] == "train"
        ]
        assert train.data.tags["rlgen.worker"] == run.data.tags["rlgen.worker"]  # the whole branch ran in one worker
    workers = {run.data.tags["rlgen.worker"] for run in flows.values()}
    assert (
        len(workers) == 2 and pipeline.data.tags["rlgen.worker"] not in workers
    )  # two worker processes, not the CLI's
    first, second = (run.info for run in flows.values())
    assert first.start_time < second.end_time and second.start_time < first.end_time  # at once
    return flows


@needs_corpus
def test_dask_runs_the_branches_on_a_local_multi_process_cluster(tmp_path: Path) -> None:
    # Prefect's embedded server, as `rlgen run pipeline` on a laptop: it lives in the CLI's process, on a
    # temporary port that the workers learn from the pipeline (else each would start a server of its own).
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    env |= {"RLGEN_HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}
    rlgen = Path(sys.executable).with_name("rlgen")
    done = subprocess.run(
        [str(rlgen), *ARGS, "--set", "runner=dask"], check=False, env=env, capture_output=True, text=True, timeout=600
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Creating a new Dask cluster with `distributed.deploy.local.LocalCluster`" in output
    assert output.count("Starting temporary server") == 1  # the workers used the CLI's server
    branches_ran_on_workers(tmp_path / "mlruns")


@needs_corpus
def test_ray_runs_the_branches_on_a_local_multi_process_cluster(rlgen_cli, prefect_server: str, store: Path) -> None:
    done = rlgen_cli(*ARGS, "--set", "runner=ray")
    assert "Creating a local Ray instance" in done.stdout + done.stderr
    flows = branches_ran_on_workers(store)
    for run in flows.values():  # the Prefect server saw each branch's task run and subflow run complete
        flow_run = httpx.get(f"{prefect_server}/flow_runs/{run.data.tags['prefect.flow_run_id']}", timeout=10).json()
        task_run = httpx.get(f"{prefect_server}/task_runs/{run.data.tags['prefect.task_run_id']}", timeout=10).json()
        assert flow_run["state_type"] == task_run["state_type"] == "COMPLETED" and task_run["name"].startswith(
            "branch-"
        )


def test_runner_keys_are_checked_before_any_work(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    with pytest.raises(ConfigError, match="runner_address='tcp://h:8786' needs runner=dask or runner=ray"):
        config_from_overrides(PipelineConfig, ["runner_address=tcp://h:8786"])
    with pytest.raises(ConfigError, match="runner: Input should be 'thread', 'dask' or 'ray'"):
        config_from_overrides(PipelineConfig, ["runner=spark"])

    import importlib.util

    find_spec = importlib.util.find_spec
    with monkeypatch.context() as patch:  # as if the cluster extra were not installed
        patch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "prefect_ray" else find_spec(name, *a)
        )
        with pytest.raises(
            ConfigError, match=r"runner=ray needs the prefect_ray package.*pip install -e '\.\[cluster\]'"
        ):
            config_from_overrides(PipelineConfig, ["runner=ray"])

    # An existing cluster's workers cannot reach Prefect's embedded server or this machine's SQLite store.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from rlgen.pipeline.cluster import check_runner

    cfg = config_from_overrides(PipelineConfig, ["runner=dask", "runner_address=tcp://h:8786"])
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(ConfigError) as err:
        check_runner(cfg)
    assert "a Prefect server (PREFECT_API_URL)" in str(err.value) and "an MLflow server (MLFLOW_TRACKING_URI)" in str(
        err.value
    )
    check_runner(config_from_overrides(PipelineConfig, ["runner=dask"]))  # a local cluster: fine


class Holders:
    """Threads that each hold a GPU slot (tasks.cluster.hold_gpu, holder i in turn i) until released."""

    def __init__(self, indices: list[int], count: int) -> None:
        self.held: list[int] = []  # the GPU each holder got, in the order they got it
        self.errors: list[Exception] = []
        self.release = threading.Event()
        self.threads = [threading.Thread(target=self.hold, args=(indices, turn)) for turn in range(count)]
        for thread in self.threads:
            thread.start()

    def hold(self, indices: list[int], turn: int) -> None:
        from rlgen.pipeline.cluster import hold_gpu

        try:
            with hold_gpu(indices, turn) as index:
                self.held.append(index)
                self.release.wait(timeout=60)
        except Exception as err:
            self.errors.append(err)

    def wait_for(self, count: int, server: str, indices: list[int], timeout: float = 60) -> list[int]:
        """Wait until `count` holders hold a slot; then the server must count exactly those as taken, every GPU's
        limit full, so that no other holder can get one until a release (no sleep that hopes for the best)."""
        deadline = time.monotonic() + timeout
        while len(self.held) < count and not self.errors and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.errors, self.errors
        limits = [httpx.get(f"{server}/v2/concurrency_limits/gpu-{i}", timeout=10).json() for i in indices]
        assert [(lim["limit"], lim["active_slots"]) for lim in limits] == [(1, 1)] * len(indices), limits
        waiting = [thread for thread in self.threads if thread.is_alive()]
        assert len(self.held) == count and len(waiting) == len(self.threads), (self.held, waiting)
        return list(self.held)

    def finish(self) -> list[int]:
        self.release.set()
        for thread in self.threads:
            thread.join(timeout=60)
        assert not self.errors, self.errors
        return self.held


def test_one_gpu_slot_serializes_its_holders(prefect_server: str) -> None:
    holders = Holders([0], count=2)
    try:
        assert holders.wait_for(1, prefect_server, [0]) == [0]  # the second waits for gpu-0 ...
    finally:
        assert holders.finish() == [0, 0]  # ... and gets it once the first releases it
    limit = httpx.get(f"{prefect_server}/v2/concurrency_limits/gpu-0", timeout=10).json()
    assert limit["limit"] == 1 and limit["active_slots"] == 0  # created with one slot, free again


def test_several_gpus_spread_their_holders(prefect_server: str) -> None:
    holders = Holders([0, 1], count=3)
    try:
        # one holder on each GPU at once; the third waits ...
        assert sorted(holders.wait_for(2, prefect_server, [0, 1])) == [0, 1]
    finally:
        held = holders.finish()
        assert len(held) == 3 and set(held) == {0, 1}  # ... for the GPU it chose (turn 2 prefers gpu-0), then holds it


def test_gpu_slot_is_a_no_op_off_cuda(prefect_server: str) -> None:
    import torch

    from rlgen.pipeline.cluster import gpu_slot

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: `auto` resolves to it")
    before = httpx.post(f"{prefect_server}/v2/concurrency_limits/filter", json={}, timeout=10).json()
    for device in ("auto", "cpu"):
        with gpu_slot(device) as got:
            assert got == device
    assert httpx.post(f"{prefect_server}/v2/concurrency_limits/filter", json={}, timeout=10).json() == before
