"""docker/compose.yaml agrees with what the code reads (no Docker engine runs here, so it is parsed)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())


def test_services_ports_and_urls_agree() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "prefect-server", "mlflow", "worker"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    prefect_port = services["prefect-server"]["ports"][0].rsplit(":", 1)[1]
    mlflow_port = services["mlflow"]["ports"][0].rsplit(":", 1)[1]
    worker = services["worker"]["environment"]
    # the worker reads the same variables as rlgen itself (tasks/tracking.py, Prefect's settings)
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{prefect_port}/api"
    assert worker["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
    assert f"--port {prefect_port}" in services["prefect-server"]["command"]
    assert f"--port {mlflow_port}" in services["mlflow"]["command"]
    # MLflow 3 refuses requests whose Host header it does not allow: the worker's must be allowed
    allowed = services["mlflow"]["command"].split("--allowed-hosts ", 1)[1].split()[0].split(",")
    assert f"mlflow:{mlflow_port}" in allowed and "127.0.0.1:*" in allowed
    assert "rlgen-process" in services["worker"]["command"]  # the pool prefect.yaml deploys to
    assert "rlgen-process" in (ROOT / "prefect.yaml").read_text()


def test_databases_and_credentials() -> None:
    text = (ROOT / "docker" / "compose.yaml").read_text()
    services = compose()["services"]
    assert "@postgres:5432/prefect" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert "@postgres:5432/mlflow" in services["mlflow"]["command"]
    init = (ROOT / "docker" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE prefect" in init and "CREATE DATABASE mlflow" in init
    # no password in the repository: every credential comes from the environment, required
    for url in re.findall(r"postgresql\S*://[^\s\"']+", text):
        assert "${POSTGRES_PASSWORD:?" in url, url
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_dockerfile_installs_the_server_extra_on_request() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "ARG EXTRAS" in dockerfile and "ARG BASE=python:3.11-slim" in dockerfile
    assert compose()["services"]["worker"]["build"]["args"]["EXTRAS"] == "server"
