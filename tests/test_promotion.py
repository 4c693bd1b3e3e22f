"""Champion/challenger promotion against a real (temporary) MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlgen import tracking
from rlgen.registry import family
from rlgen.tracking import promotion

GAN = family("gan").primary


def register(fid: float, tmp_path: Path) -> tracking.ModelVersion:
    with tracking.run("exp", "gan-run") as run_id:
        (tmp_path / "model.pt").write_bytes(b"weights")
        tracking.log_artifact(run_id, tmp_path / "model.pt", "model")
        return tracking.register_model(run_id, "model", "dcgan-mnist")


def test_champion_moves_only_to_a_better_model_on_the_same_evaluation(store: Path, tmp_path: Path) -> None:
    first = promotion.promote(register(90.0, tmp_path), GAN, {"eval/fid_lenet": 90.0}, "mnist|abc|fid_samples=10000")
    assert (first.alias, first.reason, first.champion_version) == ("champion", "first version", None)

    worse = promotion.promote(register(95.0, tmp_path), GAN, {"eval/fid_lenet": 95.0}, "mnist|abc|fid_samples=10000")
    assert worse.alias == "challenger" and worse.champion_value == 90.0 and worse.champion_version == first.version
    tags = tracking.client().get_model_version("dcgan-mnist", worse.version).tags
    assert (
        tags["rlgen.decision"] == "challenger"
        and tags["rlgen.champion_value"] == "90.0"
        and tags["rlgen.primary_value"] == "95.0"
    )
    assert (
        tracking.get_run(tracking.client().get_model_version("dcgan-mnist", worse.version).run_id).data.tags[
            "rlgen.decision"
        ]
        == "challenger"
    )

    better = promotion.promote(register(80.0, tmp_path), GAN, {"eval/fid_lenet": 80.0}, "mnist|abc|fid_samples=10000")
    assert better.alias == "champion" and "beats the champion's 90" in better.reason
    assert str(tracking.alias_version("dcgan-mnist", "champion").version) == better.version
    assert str(tracking.alias_version("dcgan-mnist", "challenger").version) == worse.version
    assert tracking.resolve_model("dcgan-mnist")[0] == tracking.alias_version("dcgan-mnist", "champion").run_id

    elsewhere = promotion.promote(register(10.0, tmp_path), GAN, {"eval/fid_lenet": 10.0}, "mnist|abc|fid_samples=500")
    assert elsewhere.alias == "challenger" and "evaluated differently" in elsewhere.reason

    broken = promotion.promote(
        register(float("nan"), tmp_path), GAN, {"eval/fid_lenet": float("nan")}, "mnist|abc|fid_samples=10000"
    )
    assert broken.alias == "challenger"
    assert str(tracking.alias_version("dcgan-mnist", "champion").version) == better.version


@pytest.mark.parametrize(
    ("name", "value", "incumbent", "promoted"),
    [("dqn", 500.0, 480.0, True), ("dqn", 400.0, 480.0, False), ("vae", 99.0, 100.0, True), ("lm", 1.8, 1.7, False)],
)
def test_direction_of_each_primary_metric(name: str, value: float, incumbent: float, promoted: bool) -> None:
    tags = {"rlgen.primary_value": str(incumbent), "rlgen.evaluation": "same"}
    assert promotion.decide(family(name).primary, value, "same", tags)[0] is promoted
