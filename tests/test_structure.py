"""The shape the code keeps: one record per family that everything else enumerates, family knowledge in few
files, short modules. The extra family below is defined here and nowhere else: registering it is all it takes
for the CLI, its flow, the pipeline, the report and promotion to pick it up."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import pytest
import torch
from mlflow.tracking import MlflowClient
from pydantic import Field
from torch import Tensor, nn
from typer.testing import CliRunner

from models.training import Report, Trainer
from rlgen.config import TrainConfig
from rlgen.export.checked import ExportSpec
from rlgen.family import Branch, Family, Loaded, Panels, Primary, Series
from rlgen.registry import FAMILIES, register, unregister
from rlgen.tracking.runs import log_params

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("models", "rlgen", "tasks", "flows")


# --------------------------------------------------------------------------- a tiny family: fit y = 3x + 1


class LineConfig(TrainConfig):
    """A straight line fitted by SGD."""

    family: ClassVar[str] = "line"

    steps: int = Field(40, gt=0, description="Gradient steps.")
    lr: float = Field(0.1, gt=0.0, description="SGD learning rate.")


class Points(NamedTuple):
    x: Tensor  # (N, 1)
    y: Tensor  # (N, 1)


class LineData:
    """The domain: 64 noiseless points of y = 3x + 1."""

    def prepare(self, cfg: LineConfig) -> Points:
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        return Points(x, 3 * x + 1)

    def report(self, cfg: LineConfig, prepared: Points, run_id: str) -> None:
        log_params(run_id, {"data.points": len(prepared.x)})

    def context(self, cfg: LineConfig, prepared: Points, parent_id: str) -> None:
        return None

    def evaluation_parts(self, cfg: LineConfig, prepared: Points) -> tuple[str, ...]:
        return ("line", str(len(prepared.x)))


DOMAIN = LineData()


class LineTrainer(Trainer):
    def __init__(self, cfg: LineConfig, prepared: Points, model: nn.Module) -> None:
        self.name, self.budget, self.log_every, self.model, self.data = (
            cfg.registered_name,
            cfg.steps,
            10,
            model,
            prepared,
        )
        self.optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)

    def step(self) -> dict[str, Tensor]:
        loss = nn.functional.mse_loss(self.model(self.data.x), self.data.y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {"train/loss": loss.detach()}

    def reports(self) -> list[Report]:
        return [Report({"val/slope": float(self.model.weight)})] if self.steps % 20 == 0 else []

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}


def build(cfg: LineConfig, prepared: Points) -> dict[str, nn.Module]:
    return {"model": nn.Linear(1, 1)}


def trainer(
    cfg: LineConfig, prepared: Points, modules: dict[str, nn.Module], device: torch.device, context: None = None
) -> LineTrainer:
    return LineTrainer(cfg, prepared, modules["model"])


def evaluate(cfg: LineConfig, prepared: Points, trained: Loaded, context: None, run_id: str) -> dict[str, float]:
    with torch.no_grad():
        return {"eval/mse": float(nn.functional.mse_loss(trained.modules["model"](prepared.x), prepared.y))}


def export(cfg: LineConfig, prepared: Points, trained: Loaded) -> ExportSpec:
    return ExportSpec(trained.modules["model"], (prepared.x,), {"input": "x (B, 1)"})


def curves(history: dict[str, Series]) -> Panels:
    return {"loss": {"train": history.get("train/loss", [])}}


LINE = Family(
    name="line",
    config=LineConfig,
    summary="A straight line fitted by SGD (defined in a test).",
    primary=Primary("eval/mse", higher_is_better=False),
    headline=("mse",),
    consumer="score",
    branches={"line": Branch({}, {"steps": 30}, {"steps": 300})},
    implementation=__name__,
)


@pytest.fixture
def line_family() -> Iterator[Family]:
    register(LINE)
    try:
        yield LINE
    finally:
        unregister(LINE.name)


def test_an_extra_family_is_picked_up_by_the_cli_its_flow_the_pipeline_the_report_and_promotion(
    line_family: Family, prefect_server: str, store: Path
) -> None:
    from flows.models import flow_for
    from flows.pipeline import pipeline_flow
    from rlgen.cli import make_app
    from rlgen.pipeline.config import PipelineConfig

    help_text = CliRunner().invoke(make_app(), ["run", "line", "--help"], env={"COLUMNS": "200"}).output
    assert "A straight line fitted by SGD" in help_text and "steps = 40" in help_text and "lr = 0.1" in help_text

    first = flow_for("line")(LineConfig(steps=40))
    assert (first.family, first.model, first.alias) == ("line", "line/1", "champion")
    assert first.metrics["eval/mse"] < 0.5 and first.metrics["train/steps"] == 40
    mlflow = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    trained = mlflow.get_run(first.run_id)
    assert [s for s, _ in sorted((m.step, m.value) for m in mlflow.get_metric_history(first.run_id, "val/slope"))] == [
        20,
        40,
    ]
    assert {"checkpoints/line.pt", "plots/learning_curve.png"} <= artifacts(mlflow, first.run_id)
    assert trained.data.tags["rlgen.family"] == "line" and trained.data.params["steps"] == "40"

    result = pipeline_flow(PipelineConfig(models=["line"], overrides={"line": {"steps": 2, "lr": 1e-6}}))
    assert result["models"] == {"line": "line/2"}
    report = mlflow.download_artifacts(str(result["run_id"]), "report/report.md", str(store.parent))
    text = Path(report).read_text()
    assert "| line | ok |" in text and "challenger" in text and "eval/mse" in text  # promotion compared it with line/1
    assert str(mlflow.get_model_version_by_alias("line", "champion").version) == "1"


def artifacts(mlflow: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    found = set()
    for item in mlflow.list_artifacts(run_id, folder):
        found |= artifacts(mlflow, run_id, item.path) if item.is_dir else {item.path}
    return found


# --------------------------------------------------------------------------- the shape of the source


def source_files() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_family_is_known_to_at_most_three_source_files(name: str) -> None:
    """Its model, its family folder, and the registry line: the family's name as a string, or its folder's path."""
    mention = re.compile(rf"""["']{re.escape(name)}["']|families[./]{re.escape(name)}\b""")
    knowing: set[str] = set()
    for path in source_files():
        if mention.search(path.read_text()):
            relative = path.relative_to(ROOT)
            family_folder = relative.parts[:3] == ("rlgen", "families", name)
            knowing.add(f"rlgen/families/{name}/" if family_folder else str(relative))
    assert len(knowing) <= 3, sorted(knowing)


def test_no_module_is_longer_than_300_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in source_files() if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


def test_registry_records_are_complete() -> None:
    """Every family's primary and headline metrics are `eval/...`, its branches build valid configs, its
    implementation provides what the recipe calls."""
    from rlgen.pipeline.config import PipelineConfig

    for family in FAMILIES.values():
        assert family.primary.metric.startswith("eval/") and family.branches and family.config.family == family.name
        impl: Any = family.impl()
        for attribute in ("DOMAIN", "build", "trainer", "evaluate", "export", "curves"):
            assert hasattr(impl, attribute), (family.name, attribute)
        for branch in family.branches:
            assert PipelineConfig(models=[branch]).branch_config(branch).family == family.name
