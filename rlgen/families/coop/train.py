"""What trains, evaluates and exports coop: the generator proposes, the descriptor revises by Langevin, both learn
from the revision (Xie et al. 2018); FID-LeNet of proposals and of revised samples; the generator."""

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
    generator_inputs,
    image_metadata,
    log_sample_grid,
    selection,
)
from rlgen.export.checked import ExportSpec
from rlgen.families.coop.config import CoopConfig
from rlgen.families.langevin import (
    GAP_NOTE,
    adam,
    build_descriptor,
    build_generator,
    calibrated_samples,
    chain_grid,
    descriptor_sampler,
    fixed_noise,
    infer,
    score_curves,
    synthesize,
)
from rlgen.family import Loaded, Panels, Series
from rlgen.tracking.runs import set_tags

__all__ = ["DOMAIN", "build", "curves", "evaluate", "export", "trainer"]


def build(cfg: CoopConfig, prepared: PreparedData) -> dict[str, nn.Module]:
    return {"descriptor": build_descriptor(cfg), "generator": build_generator(cfg)}


class CoopTrainer(ImageTrainer):
    """One step: propose g(z), revise by the descriptor's Langevin chains, update the descriptor on (data, revised)
    and the generator on (z, revised)."""

    shown = ("train/f_real", "train/recon_mse")

    def __init__(
        self,
        cfg: CoopConfig,
        data: dict[str, Tensor],
        generator: nn.Module,
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
        self.name, self.cfg, self.device = cfg.registered_name, cfg, device
        self.generator, self.descriptor = generator, descriptor
        self.opt_d, self.opt_g = adam(descriptor, cfg.descriptor_lr), adam(generator, cfg.generator_lr)
        self.fixed_z = fixed_noise(cfg, device)

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        z = torch.randn(len(x), self.cfg.latent_dim, device=self.device)
        with torch.no_grad():
            proposed = self.generator(z)  # (B, 1, 28, 28) in [-1, 1]
        revised, _ = synthesize(self.cfg, self.descriptor, proposed)
        if self.cfg.infer_steps:
            z = infer(self.cfg, self.generator, z, revised, self.cfg.infer_steps)
        stats = langevin.descriptor_step(self.descriptor, self.opt_d, x, revised, self.cfg.energy_penalty)
        # how far the revision moved the proposals, per pixel in [0, 1] units: near 0, the descriptor teaches nothing
        stats["train/revision_mse"] = (revised - proposed).pow(2).mean() / 4.0
        return stats | langevin.generator_step(self.generator, self.opt_g, z, revised, self.cfg.gen_sigma)

    def end_of_epoch(self, epoch: int) -> Report:
        with torch.no_grad():
            proposed = self.generator(self.fixed_z)
        revised, _ = synthesize(self.cfg, self.descriptor, proposed)
        grids = {f"samples/epoch_{epoch:03d}.png": Grid(gan.to_unit(revised).clamp(0, 1), nrow=8)}
        grids[f"chains/epoch_{epoch:03d}.png"] = chain_grid(self.cfg, self.descriptor, proposed[:8])
        return Report(grids=grids)

    def prior_samples(self, n: int) -> Tensor:
        return calibrated_samples(self.cfg, self.generator, n, self.device)  # the proposals: eval/fid_lenet's samples

    def modules(self) -> dict[str, nn.Module]:
        return {"descriptor": self.descriptor, "generator": self.generator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_d": self.opt_d, "opt_g": self.opt_g}

    def finish(self) -> None:
        super().finish()  # the kept epoch's weights first, then their batch norm calibrated
        langevin.calibrate_batch_norm(self.generator, self.cfg.latent_dim, self.device)


def trainer(
    cfg: CoopConfig,
    prepared: PreparedData,
    modules: dict[str, nn.Module],
    device: torch.device,
    evaluator: EvaluatorRef | None = None,
) -> CoopTrainer:
    data, picks = load_prepared(prepared.path, device), selection(cfg, prepared, evaluator, device)
    return CoopTrainer(cfg, data, modules["generator"], modules["descriptor"], device, picks)


def curves(history: dict[str, Series]) -> Panels:
    fit = {
        "per pixel: the generator's fit to the revised images, and the revision's move": {
            "fit mse": history.get("train/recon_mse", []),
            "revision mse": history.get("train/revision_mse", []),
        }
    }
    return score_curves(history) | fit


def evaluate(
    cfg: CoopConfig, prepared: PreparedData, trained: Loaded, evaluator: EvaluatorRef, run_id: str
) -> dict[str, float]:
    """FID-LeNet and the class histogram of the generator's samples, and of the same samples revised by the
    descriptor."""
    set_tags(run_id, {"rlgen.metric_notes": GAP_NOTE})
    generator, descriptor = trained.modules["generator"], trained.modules["descriptor"]
    assert isinstance(generator, gan.Generator)
    export = gan.GeneratorExport(generator)
    device = next(generator.parameters()).device
    metrics = evaluate_samples(cfg, prepared, evaluator, export, cfg.latent_dim, device)
    revise = descriptor_sampler(cfg, descriptor, lambda z: gan.from_unit(export(z, z[:, 0].long())))
    revised = evaluate_samples(cfg, prepared, evaluator, revise, cfg.latent_dim, device)
    metrics |= {k.replace("eval/", "eval/revised_"): v for k, v in revised.items() if "class_share" not in k}
    log_sample_grid(run_id, revise, cfg.latent_dim, False, device, cfg.seed, "revised_samples.png")
    log_sample_grid(run_id, export, cfg.latent_dim, False, device, cfg.seed)
    return metrics


def export(cfg: CoopConfig, prepared: PreparedData, trained: Loaded) -> ExportSpec:
    """The generator (z, y) -> images in [0, 1] (y ignored)."""
    generator = trained.modules["generator"]
    assert isinstance(generator, gan.Generator)
    metadata = image_metadata(cfg, latent_dim=cfg.latent_dim, module="generator")
    return ExportSpec(gan.GeneratorExport(generator), generator_inputs(cfg, cfg.latent_dim), metadata)
