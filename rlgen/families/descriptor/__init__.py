"""The descriptor family: an energy-based ConvNet whose samples come from Langevin chains; exported as an energy."""

from rlgen.config.image import QUICK_EVALUATION
from rlgen.families.descriptor.config import DescriptorConfig
from rlgen.family import Branch, Family, Primary

FAMILY = Family(
    name="descriptor",
    config=DescriptorConfig,
    summary="Energy-based descriptor net sampled by Langevin dynamics; exported as an energy (scoring) module.",
    primary=Primary("eval/fid_lenet", higher_is_better=False),
    headline=("fid_lenet", "class_entropy", "confident_fraction"),
    evaluation=("fid_samples", "lenet_epochs"),
    consumer="score",
    branches={"descriptor": Branch({}, {**QUICK_EVALUATION, "epochs": 2}, {"epochs": 60})},
    implementation="rlgen.families.descriptor.train",
)

__all__ = ["FAMILY", "DescriptorConfig"]
