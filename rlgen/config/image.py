"""The keys every image flow shares: the dataset and its split, the budget, the evaluation's sample counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from rlgen.config.base import TrainConfig

if TYPE_CHECKING:
    from rlgen.pipeline.config import PipelineConfig


class ImageConfig(TrainConfig):
    """Data, budget and evaluation keys that every image flow shares."""

    dataset: Literal["mnist", "fashion-mnist"] = Field("mnist", description="mnist or fashion-mnist.")
    data_dir: str | None = Field(
        None, description="A folder of IDX files (.gz or raw) to read offline; default: download (torchvision)."
    )
    split_seed: int = Field(0, ge=0, description="Seed of the train/validation/test split.")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="Share held out for validation.")
    test_fraction: float = Field(
        0.1, gt=0.0, lt=0.5, description="Share held out for testing when the official train images are absent."
    )
    epochs: int = Field(20, gt=0, description="Passes over the training images.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many batches (tests, quick runs).")
    batch_size: int = Field(128, gt=0, description="Images per training batch.")
    log_every: int = Field(50, gt=0, description="Log the means of the training statistics every N batches.")
    fid_samples: int = Field(10_000, gt=0, description="Generated images for FID-LeNet and the class histogram.")
    lenet_epochs: int = Field(20, gt=0, description="Epochs of the LeNet evaluator (trained once per dataset).")
    val_fid_every: int = Field(
        1,
        ge=0,
        description="Score FID-LeNet of prior samples against the validation images every N epochs and after the "
        "last (val/fid_lenet); 0: off. Model selection uses only this curve: the test split is for the final "
        "evaluation.",
    )
    val_fid_samples: int = Field(
        1_000,
        ge=2,
        description="Generated images per val/fid_lenet score, against as many validation images (all of them if "
        "fewer).",
    )
    keep: Literal["best_val_fid", "last"] = Field(
        "best_val_fid",
        description="The weights training ends with: best_val_fid (the epoch with the lowest val/fid_lenet; "
        "train/kept_epoch says which) or last.",
    )

    @model_validator(mode="after")
    def _split_leaves_training_data(self) -> ImageConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:.2f} leaves almost "
                "nothing to train on; keep their sum below 0.9"
            )
        if self.keep == "best_val_fid" and self.val_fid_every == 0:
            raise ValueError(
                "keep=best_val_fid selects the epoch by val/fid_lenet, which val_fid_every=0 turns off; "
                "set keep=last or val_fid_every to a number of epochs"
            )
        return self

    @property
    def conditional(self) -> bool:
        """Whether the model takes class labels."""
        return False

    @property
    def registered_name(self) -> str:
        """The MLflow registered-model name: family (or variant) and dataset, e.g. `conv-vae-mnist`."""
        return f"{self.family}-{self.dataset}"

    @classmethod
    def pipeline_data(cls, values: dict[str, Any], pipeline: PipelineConfig) -> dict[str, Any]:
        """The pipeline's dataset, read offline from `<data_root>/<dataset>/raw` when it has a data_root."""
        data: dict[str, Any] = {"dataset": pipeline.dataset}
        if pipeline.data_root:
            data["data_dir"] = str(Path(pipeline.data_root).expanduser() / pipeline.dataset / "raw")
        return data


QUICK_EVALUATION = {"fid_samples": 2_000, "lenet_epochs": 5}  # the pipeline's quick profile for every image branch
