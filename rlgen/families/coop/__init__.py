"""The coop family: descriptor and generator trained cooperatively (CoopNets); the generator is exported."""

from rlgen.config.image import QUICK_EVALUATION
from rlgen.families.coop.config import CoopConfig
from rlgen.family import Branch, Family, Primary

FAMILY = Family(
    name="coop",
    config=CoopConfig,
    summary="Descriptor and generator trained cooperatively (CoopNets); exports the generator.",
    primary=Primary("eval/fid_lenet", higher_is_better=False),
    headline=("fid_lenet", "revised_fid_lenet", "class_entropy"),
    evaluation=("fid_samples", "lenet_epochs"),
    consumer="sample",
    branches={"coop": Branch({}, {**QUICK_EVALUATION, "epochs": 2}, {"epochs": 60})},
    implementation="rlgen.families.coop.train",
)

__all__ = ["FAMILY", "CoopConfig"]
