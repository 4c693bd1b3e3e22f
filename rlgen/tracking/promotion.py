"""Champion/challenger promotion in the model registry.

Every trained model is registered as a new version. It takes the `champion` alias only if its primary
metric beats the current champion's on the same evaluation; otherwise it becomes the `challenger`. The
decision and both numbers are written as tags on the new version (and returned for the run and the report).
"Same evaluation" means the same evaluation key: the data's content hash and the evaluation settings
(samples, episodes, split), so that a quick-profile model is never compared with a full-profile one.
"""

from __future__ import annotations

import math
import threading
from typing import NamedTuple

from rlgen.family import Primary
from rlgen.tracking.registry import (
    ModelVersion,
    alias_version,
    set_alias,
    tag_version,
    wait_for_earlier_versions,
)
from rlgen.tracking.runs import set_tags

CHAMPION, CHALLENGER = "champion", "challenger"
DECIDED = "rlgen.decision"  # the version tag written last, once a version's alias is set
_lock = threading.Lock()  # concurrent pipeline branches promote different names, but never race on one


class Decision(NamedTuple):
    name: str
    version: str
    alias: str  # champion or challenger
    metric: str
    value: float
    champion_version: str | None  # the champion it was compared with, if any
    champion_value: float | None
    reason: str

    def as_tags(self) -> dict[str, str]:
        """The decision as model-version (and run) tags."""
        return {
            "rlgen.decision": self.alias,
            "rlgen.decision_reason": self.reason,
            "rlgen.primary_metric": self.metric,
            "rlgen.primary_value": repr(self.value),  # exact, so that an equal value never "beats" its rounding
            "rlgen.champion_version": self.champion_version or "",
            "rlgen.champion_value": "" if self.champion_value is None else repr(self.champion_value),
        }


def beats(value: float, incumbent: float, higher_is_better: bool) -> bool:
    """Whether `value` is strictly better than `incumbent`; a non-finite value never is."""
    if not math.isfinite(value):
        return False
    if not math.isfinite(incumbent):
        return True
    return value > incumbent if higher_is_better else value < incumbent


def decide(
    primary: Primary, value: float, evaluation: str, champion_tags: dict[str, str] | None
) -> tuple[bool, float | None, str]:
    """(promote?, the champion's value, why) for a new version against the current champion's tags."""
    if champion_tags is None:
        return (
            math.isfinite(value),
            None,
            "first version" if math.isfinite(value) else f"{primary.metric} is not finite",
        )
    incumbent = float(champion_tags.get("rlgen.primary_value", "nan"))
    if champion_tags.get("rlgen.evaluation") != evaluation:
        return (
            False,
            incumbent,
            "the champion was evaluated differently; compare them on one evaluation, or set the alias by hand",
        )
    if beats(value, incumbent, primary.higher_is_better):
        return True, incumbent, f"{primary.metric} {value:.6g} beats the champion's {incumbent:.6g}"
    return False, incumbent, f"{primary.metric} {value:.6g} does not beat the champion's {incumbent:.6g}"


def promote(version: ModelVersion, primary: Primary, metrics: dict[str, float], evaluation: str) -> Decision:
    """Give the new `version` the champion or the challenger alias, and tag it with the decision."""
    value = float(metrics.get(primary.metric, float("nan")))
    # Another process (a second pipeline run on the same store) may be promoting an earlier version of
    # this model right now: decide after it, against the champion it leaves, never both as "first version".
    wait_for_earlier_versions(version.name, version.version, DECIDED)
    with _lock:
        champion = alias_version(version.name, CHAMPION)
        promote_it, incumbent, reason = decide(primary, value, evaluation, dict(champion.tags) if champion else None)
        alias = CHAMPION if promote_it else CHALLENGER
        decision = Decision(
            version.name,
            version.version,
            alias,
            primary.metric,
            value,
            str(champion.version) if champion else None,
            incumbent,
            reason,
        )
        tags = {**decision.as_tags(), "rlgen.evaluation": evaluation}
        decided = tags.pop(DECIDED)
        tag_version(version.name, version.version, tags)
        set_alias(version.name, alias, version.version)
        tag_version(version.name, version.version, {DECIDED: decided})  # last: later versions wait for it
    set_tags(version.run_id, decision.as_tags())
    return decision


def evaluation_key(*parts: object) -> str:
    """A stable key naming what an evaluation depends on (data hash, environment, sample counts, ...)."""
    return "|".join(str(p) for p in parts)
