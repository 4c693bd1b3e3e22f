"""What trains, evaluates and exports the descriptor: Langevin synthesis against the data, FID-LeNet, the energy."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models import gan, langevin
from models.image_trainer import ImageTrainer, Selection
from models.training import Grid, Report
from rlgen.data.images import PreparedData, load_prepared
from rlgen.domains import IMAGES as DOMAIN
from rlgen.evaluation.images import (
    EvaluatorRef,
    evaluate_samples,
    image_metadata,
    log_sample_grid,
    prior_samples,
    selection,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.descriptor.config import DescriptorConfig
from rlgen.families.langevin import (
    GAP_NOTE,
    adam,
    build_descriptor,
    chain_grid,
    descriptor_sampler,
    score_curves,
    synthesize,
)
from rlgen.family import Loaded, Panels, Series
from rlgen.tracking.runs import set_tags

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]


def build(cfg: DescriptorConfig, prepared: PreparedData) -> dict[str, nn.Module]:
    return {"descriptor": build_descriptor(cfg)}


class DescriptorTrainer(ImageTrainer):
    """Alternate Langevin synthesis from the chain starts and the descriptor's update (Xie et al. 2016)."""

    shown = ("train/f_real", "train/f_synth")

    def __init__(
        self,
        cfg: DescriptorConfig,
        data: dict[str, Tensor],
        descriptor: nn.Module,
        device: torch.device,
        selection: Selection | None = None,
    ) -> None:
        super().__init__(
            data["train_images"],
            data["train_labels"],
            cfg.batch_size,
            cfg.epochs,
            cfg.max_steps,
            cfg.log_every,
            selection,
        )
        self.name, self.cfg, self.descriptor, self.device = cfg.registered_name, cfg, descriptor, device
        self.optimizer = adam(descriptor, cfg.descriptor_lr)
        self.mean_image = gan.from_unit(data["train_images"].float().mean(0) / 255.0)  # (1, 28, 28) in [-1, 1]
        self.starts = langevin.ChainStarts(cfg.chain_init, self.mean_image)
        self.grid_starts = self.starts.fresh(cfg.grid_size, torch.Generator(device=device).manual_seed(cfg.seed))

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        x0, slots = self.starts.draw(len(x))
        synth, _ = synthesize(self.cfg, self.descriptor, x0)
        self.starts.keep(slots, synth)
        return langevin.descriptor_step(self.descriptor, self.optimizer, x, synth, self.cfg.energy_penalty)

    def end_of_epoch(self, epoch: int) -> Report:
        synth, _ = synthesize(self.cfg, self.descriptor, self.grid_starts)
        grids = {f"samples/epoch_{epoch:03d}.png": Grid(gan.to_unit(synth).clamp(0, 1), nrow=8)}
        grids[f"chains/epoch_{epoch:03d}.png"] = chain_grid(self.cfg, self.descriptor, self.grid_starts[:8])
        return Report(grids=grids)

    def prior_samples(self, n: int) -> Tensor:
        self.descriptor.eval()  # chains from fresh starts, never the persistent buffer: as the evaluation samples
        fresh = langevin.ChainStarts(self.cfg.chain_init, self.mean_image, buffer_size=0)
        images = prior_samples(
            self.cfg, descriptor_sampler(self.cfg, self.descriptor, lambda z: fresh.fresh(len(z))), 1, n, self.device
        )
        self.descriptor.train()
        return images

    def modules(self) -> dict[str, nn.Module]:
        return {"descriptor": self.descriptor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def buffers(self) -> dict[str, Tensor]:
        chains = {"chain_buffer": self.starts.buffer} if self.starts.buffer is not None else {}
        return {"mean_image": self.mean_image, **chains}


def trainer(
    cfg: DescriptorConfig,
    prepared: PreparedData,
    modules: dict[str, nn.Module],
    device: torch.device,
    evaluator: EvaluatorRef | None = None,
) -> DescriptorTrainer:
    picks = selection(cfg, prepared, evaluator, device)
    return DescriptorTrainer(cfg, load_prepared(prepared.path, device), modules["descriptor"], device, picks)


def curves(history: dict[str, Series]) -> Panels:
    return score_curves(history)


def evaluate(
    cfg: DescriptorConfig, prepared: PreparedData, trained: Loaded, evaluator: EvaluatorRef, run_id: str
) -> dict[str, float]:
    """FID-LeNet and the class histogram of Langevin samples from fresh chains, as the other image models."""
    set_tags(run_id, {"rlgen.metric_notes": GAP_NOTE})
    descriptor = trained.modules["descriptor"]
    device = next(descriptor.parameters()).device
    starts = langevin.ChainStarts(cfg.chain_init, trained.buffers["mean_image"].to(device), buffer_size=0)
    generate = descriptor_sampler(cfg, descriptor, lambda z: starts.fresh(len(z)))
    metrics = evaluate_samples(cfg, prepared, evaluator, generate, 1, device)
    log_sample_grid(run_id, generate, 1, False, device, cfg.seed)
    return metrics


def export(cfg: DescriptorConfig, prepared: PreparedData, trained: Loaded) -> ExportSpec:
    """The energy: images (B, 1, 28, 28) in [0, 1] -> -log p(x) + const (B,)."""
    descriptor = trained.modules["descriptor"]
    assert isinstance(descriptor, langevin.Descriptor)
    examples = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(cfg.seed))
    metadata = image_metadata(cfg, module="energy", ref_sigma=cfg.ref_sigma, input="images (B, 1, 28, 28) in [0, 1]")
    return ExportSpec(langevin.DescriptorEnergy(descriptor, cfg.ref_sigma), (examples,), metadata)
