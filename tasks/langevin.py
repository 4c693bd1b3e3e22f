"""Tasks of the Langevin-driven flows: the descriptor, the generator (alternating back-propagation) and coop.

They share everything else with the VAE and GAN flows through tasks/images.py: data prep, the LeNet
evaluator, FID-LeNet and the class histogram, TorchScript export and the registry. Plain functions first,
thin Prefect tasks at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from prefect import task
from torch import Tensor

from models import gan, langevin
from models.common import seed_everything
from rlgen.config import CoopConfig, DescriptorConfig, GeneratorConfig
from tasks import images, tracking
from tasks.checkpoint import load_checkpoint
from tasks.image_data import PreparedData, load_prepared
from tasks.runs import training_device

LangevinConfig = DescriptorConfig | GeneratorConfig | CoopConfig

GAP_NOTE = (
    "train/gap_synth_minus_real is mean f(synthesized) - mean f(real): the descriptor's training loss. "
    "It goes negative once f rises on the data faster than on the chains' output; that is expected and "
    "not a sign of divergence. train/f_real and train/f_synth are the two scores over training."
)
RECON_INFER_STEPS = 100  # Langevin steps on z when reconstructing held-out images


def build_descriptor(cfg: DescriptorConfig | CoopConfig) -> langevin.Descriptor:
    return langevin.Descriptor(cfg.descriptor_channels)


def build_generator(cfg: GeneratorConfig | CoopConfig) -> gan.Generator:
    """The DCGAN generator architecture (tanh output in [-1, 1]), unconditional."""
    return gan.Generator(cfg.latent_dim, cfg.generator_channels)


def fixed_noise(cfg: GeneratorConfig | CoopConfig, device: torch.device) -> Tensor:
    """The seeded latent batch rendered as the sample grid every epoch, so that epochs compare."""
    return torch.randn(cfg.grid_size, cfg.latent_dim, generator=torch.Generator(device=device).manual_seed(cfg.seed), device=device)


def adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, betas=(0.5, 0.999))  # beta1 0.5, as CoopNets


def synthesize(cfg: DescriptorConfig | CoopConfig, descriptor: torch.nn.Module, starts: Tensor, snapshot_at: tuple[int, ...] = ()) -> tuple[Tensor, list[Tensor]]:
    """The descriptor's Langevin chains from `starts` (in [-1, 1]) with the configured step, steps and noise."""
    return langevin.langevin_descriptor(
        descriptor, starts, cfg.langevin_steps, cfg.langevin_step, cfg.ref_sigma, cfg.langevin_noise, cfg.divergence_limit, snapshot_at
    )


def infer(cfg: GeneratorConfig | CoopConfig, generator: torch.nn.Module, z: Tensor, x: Tensor, steps: int) -> Tensor:
    """Langevin on p(z | x) for images x in [-1, 1]."""
    return langevin.langevin_posterior(generator, z, x, steps, cfg.infer_step, cfg.gen_sigma, cfg.divergence_limit)


class Steps:
    """Counts training steps so that a Langevin divergence names the step it happened at."""

    def __init__(self, name: str) -> None:
        self.name, self.step = name, 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = state["step"]

    def __call__(self, fn: Callable[[Tensor, Tensor], dict[str, Tensor]]) -> Callable[[Tensor, Tensor], dict[str, Tensor]]:
        def counted(x: Tensor, y: Tensor) -> dict[str, Tensor]:
            self.step += 1
            try:
                return fn(x, y)
            except langevin.LangevinDivergence as err:
                raise langevin.LangevinDivergence(f"{self.name}, training step {self.step}: {err}") from None

        return counted


def log_chains(cfg: DescriptorConfig | CoopConfig, run_id: str, descriptor: torch.nn.Module, starts: Tensor, artifact_file: str) -> None:
    """A few chains at their first, middle and last Langevin step: one row per chain."""
    snaps = (0, cfg.langevin_steps // 2, cfg.langevin_steps)
    _, frames = synthesize(cfg, descriptor, starts, snaps)
    grid = torch.stack(frames, dim=1).flatten(0, 1)  # (chains * 3, 1, 28, 28), row-major by chain
    images.log_image(run_id, gan.to_unit(grid).clamp(0, 1), artifact_file, nrow=len(frames))


def score_curves(history: dict[str, list]) -> dict[str, dict[str, list]]:
    """Learning-curve panels of the descriptor: its scores of real and synthesized images, and their gap."""
    return {
        "descriptor score f": {"real": history["train/f_real"], "synthesized": history["train/f_synth"]},
        "f(synth) - f(real) (negative is expected)": {"gap": history["train/gap_synth_minus_real"]},
    }


# --------------------------------------------------------------------------- training


def train_descriptor(cfg: DescriptorConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    """Alternate Langevin synthesis from the chain starts and the descriptor's update."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    descriptor = build_descriptor(cfg).to(device)
    optimizer = adam(descriptor, cfg.descriptor_lr)
    mean_image = gan.from_unit(data["train_images"].float().mean(0) / 255.0)  # (1, 28, 28) in [-1, 1]
    starts = langevin.ChainStarts(cfg.chain_init, mean_image)
    grid_starts = starts.fresh(cfg.grid_size, torch.Generator(device=device).manual_seed(cfg.seed))
    tracking.log_params(run_id, {"model.descriptor_parameters": sum(p.numel() for p in descriptor.parameters()), "device.resolved": str(device)})
    tracking.set_tags(run_id, {"rlgen.metric_notes": GAP_NOTE})

    steps = Steps(cfg.registered_name)

    @steps
    def step_fn(x: Tensor, y: Tensor) -> dict[str, Tensor]:
        x0, slots = starts.draw(len(x))
        synth, _ = synthesize(cfg, descriptor, x0)
        starts.keep(slots, synth)
        return langevin.descriptor_step(descriptor, optimizer, x, synth)

    def on_epoch_end(epoch: int, step: int, on_metrics) -> None:
        synth, _ = synthesize(cfg, descriptor, grid_starts)
        images.log_image(run_id, gan.to_unit(synth).clamp(0, 1), f"samples/epoch_{epoch:03d}.png", nrow=8)
        log_chains(cfg, run_id, descriptor, grid_starts[:8], f"chains/epoch_{epoch:03d}.png")

    objects = {"descriptor": descriptor, "optimizer": optimizer, "steps": steps} | ({"chain_buffer": starts.buffer} if starts.buffer is not None else {})
    result, recorder, seconds = images.run_fit(cfg, run_id, data, step_fn, on_epoch_end, ("train/f_real", "train/f_synth"), objects)
    state = {"model": descriptor.state_dict(), "mean_image": mean_image.cpu()}
    return images.finish_training(cfg, run_id, state, result, seconds, score_curves(recorder.history), "descriptor.pt")


def train_generator(cfg: GeneratorConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    """Alternating back-propagation: infer each batch's latent vectors by Langevin, then fit g to the images."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    generator = build_generator(cfg).to(device)
    optimizer = adam(generator, cfg.generator_lr)
    n = data["train_images"].shape[0]
    latents = torch.randn(n, cfg.latent_dim, device=device)  # one z per training image, for the whole run
    fixed_z = fixed_noise(cfg, device)
    tracking.log_params(run_id, {"model.generator_parameters": sum(p.numel() for p in generator.parameters()), "device.resolved": str(device)})
    # fit_images hands each step the batch's "labels": here the images' row numbers, to look up their z
    indexed = {**data, "train_labels": torch.arange(n, device=device)}

    steps = Steps(cfg.registered_name)

    @steps
    def step_fn(x: Tensor, rows: Tensor) -> dict[str, Tensor]:
        target = gan.from_unit(x)
        z = infer(cfg, generator, latents[rows], target, cfg.infer_steps)
        latents[rows] = z
        return langevin.generator_step(generator, optimizer, z, target, cfg.gen_sigma)

    def on_epoch_end(epoch: int, step: int, on_metrics) -> None:
        with torch.no_grad():
            grid = gan.to_unit(generator(fixed_z))  # batch statistics of the prior batch (train mode)
        images.log_image(run_id, grid, f"samples/epoch_{epoch:03d}.png", nrow=8)

    objects = {"generator": generator, "optimizer": optimizer, "latents": latents, "steps": steps}
    result, recorder, seconds = images.run_fit(cfg, run_id, indexed, step_fn, on_epoch_end, ("train/recon_mse",), objects)
    langevin.calibrate_batch_norm(generator, cfg.latent_dim, device)
    h = recorder.history
    curves = {"reconstruction (per pixel)": {"mse": h["train/recon_mse"]}, "generator loss": {"loss": h["train/g_loss"]}}
    state = {"model": generator.state_dict(), "latents": latents.cpu()}
    return images.finish_training(cfg, run_id, state, result, seconds, curves, "generator.pt")


def train_coop(cfg: CoopConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    """CoopNets: the generator proposes, the descriptor revises by Langevin, both learn from the revision."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    data = load_prepared(prepared.path, device)
    descriptor, generator = build_descriptor(cfg).to(device), build_generator(cfg).to(device)
    opt_d, opt_g = adam(descriptor, cfg.descriptor_lr), adam(generator, cfg.generator_lr)
    fixed_z = fixed_noise(cfg, device)
    tracking.log_params(run_id, {
        "model.descriptor_parameters": sum(p.numel() for p in descriptor.parameters()),
        "model.generator_parameters": sum(p.numel() for p in generator.parameters()),
        "device.resolved": str(device),
    })
    tracking.set_tags(run_id, {"rlgen.metric_notes": GAP_NOTE})

    steps = Steps(cfg.registered_name)

    @steps
    def step_fn(x: Tensor, y: Tensor) -> dict[str, Tensor]:
        z = torch.randn(len(x), cfg.latent_dim, device=device)
        with torch.no_grad():
            proposed = generator(z)  # (B, 1, 28, 28) in [-1, 1]
        revised, _ = synthesize(cfg, descriptor, proposed)
        if cfg.infer_steps:
            z = infer(cfg, generator, z, revised, cfg.infer_steps)
        stats = langevin.descriptor_step(descriptor, opt_d, x, revised)
        return stats | langevin.generator_step(generator, opt_g, z, revised, cfg.gen_sigma)

    def on_epoch_end(epoch: int, step: int, on_metrics) -> None:
        with torch.no_grad():
            proposed = generator(fixed_z)
        revised, _ = synthesize(cfg, descriptor, proposed)
        images.log_image(run_id, gan.to_unit(revised).clamp(0, 1), f"samples/epoch_{epoch:03d}.png", nrow=8)
        log_chains(cfg, run_id, descriptor, proposed[:8], f"chains/epoch_{epoch:03d}.png")

    objects = {"descriptor": descriptor, "generator": generator, "opt_d": opt_d, "opt_g": opt_g, "steps": steps}
    result, recorder, seconds = images.run_fit(cfg, run_id, data, step_fn, on_epoch_end, ("train/f_real", "train/recon_mse"), objects)
    langevin.calibrate_batch_norm(generator, cfg.latent_dim, device)
    curves = score_curves(recorder.history) | {"generator's fit to the revised images (per pixel)": {"mse": recorder.history["train/recon_mse"]}}
    state = {"model": generator.state_dict(), "descriptor": descriptor.state_dict()}
    return images.finish_training(cfg, run_id, state, result, seconds, curves, "coop.pt")


TRAINERS: dict[str, Callable] = {"descriptor": train_descriptor, "generator": train_generator, "coop": train_coop}


# --------------------------------------------------------------------------- evaluation


def load_state(trained: images.ImageTrainOutput, device: torch.device) -> dict:
    with tracking.temp_dir() as tmp:
        return load_checkpoint(tracking.download(trained.run_id, trained.checkpoint, Path(tmp)), device)


def load_descriptor(cfg: DescriptorConfig | CoopConfig, state: dict, key: str, device: torch.device) -> langevin.Descriptor:
    descriptor = build_descriptor(cfg)
    descriptor.load_state_dict(state[key])
    return descriptor.to(device).eval()


def load_generator(cfg: GeneratorConfig | CoopConfig, state: dict, device: torch.device) -> gan.Generator:
    generator = build_generator(cfg)
    generator.load_state_dict(state["model"])
    return generator.to(device).eval()


def descriptor_sampler(cfg: DescriptorConfig | CoopConfig, descriptor: torch.nn.Module, starts: Callable[[Tensor], Tensor]) -> images.Generate:
    """(z, y) -> images in [0, 1]: Langevin chains from `starts(z)`; z only sets the batch (or the proposals)."""

    def generate(z: Tensor, y: Tensor) -> Tensor:
        synth, _ = synthesize(cfg, descriptor, starts(z))
        return gan.to_unit(synth).clamp(0, 1)

    return generate


def evaluate(cfg: LangevinConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    """FID-LeNet with its floor and the class histogram of `fid_samples` samples, the same measures as the VAE
    and GAN; the generator adds held-out reconstruction error, coop the FID of its descriptor-revised samples."""
    seed_everything(cfg.seed)
    device = training_device(cfg)
    state = load_state(trained, device)
    with tracking.temp_dir() as tmp:
        if isinstance(cfg, DescriptorConfig):
            descriptor = load_descriptor(cfg, state, "model", device)
            starts = langevin.ChainStarts(cfg.chain_init, state["mean_image"].to(device), buffer_size=0)
            generate = descriptor_sampler(cfg, descriptor, lambda z: starts.fresh(len(z)))
            metrics = images.evaluate_samples(cfg, prepared, evaluator, generate, 1, False, device)
        else:
            export = gan.GeneratorExport(load_generator(cfg, state, device))
            metrics = images.evaluate_samples(cfg, prepared, evaluator, export, cfg.latent_dim, False, device)
            if isinstance(cfg, CoopConfig):
                descriptor = load_descriptor(cfg, state, "descriptor", device)
                revise = descriptor_sampler(cfg, descriptor, lambda z: gan.from_unit(export(z, z[:, 0].long())))
                revised = images.evaluate_samples(cfg, prepared, evaluator, revise, cfg.latent_dim, False, device)
                metrics |= {k.replace("eval/", "eval/revised_"): v for k, v in revised.items() if "class_share" not in k}
                grid = images.sample_grid(revise, cfg.latent_dim, False, Path(tmp) / "revised_samples.png", device, cfg.seed)
                tracking.log_artifact(trained.run_id, grid, "evaluation")
            else:
                metrics |= reconstruction(cfg, prepared, export.generator, trained.run_id, device)
            generate = export
        grid = images.sample_grid(generate, cfg.latent_dim if not isinstance(cfg, DescriptorConfig) else 1, False, Path(tmp) / "samples.png", device, cfg.seed)
        tracking.log_artifact(trained.run_id, grid, "evaluation")
    images.log_evaluation(trained.run_id, metrics, trained.steps)
    return metrics


def reconstruction(cfg: GeneratorConfig, prepared: PreparedData, generator: gan.Generator, run_id: str, device: torch.device) -> dict[str, float]:
    """Per-pixel squared error of held-out test images reconstructed through z inferred by Langevin."""
    test = load_prepared(prepared.path, device)["test_images"][:1000].float() / 255.0
    z = torch.zeros(len(test), cfg.latent_dim, device=device)
    z = infer(cfg, generator, z, gan.from_unit(test), RECON_INFER_STEPS)
    recon = langevin.reconstruction_mse(generator, z, test)
    with torch.no_grad():
        pairs = torch.stack([test[:50], gan.to_unit(generator(z[:50]))], dim=1).flatten(0, 1)  # original, reconstruction
    images.log_image(run_id, pairs, "evaluation/reconstructions.png", nrow=10)
    return {"eval/recon_mse": float(recon)}


# --------------------------------------------------------------------------- export


def export(cfg: LangevinConfig, trained: images.ImageTrainOutput) -> str:
    """TorchScript of the generator ((z, y) -> images), or of the descriptor's energy (images -> energies)."""
    state = load_state(trained, torch.device("cpu"))
    if isinstance(cfg, DescriptorConfig):
        module = langevin.DescriptorEnergy(load_descriptor(cfg, state, "model", torch.device("cpu")), cfg.ref_sigma)
        examples = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(cfg.seed))
        extra = {"module": "energy", "ref_sigma": cfg.ref_sigma, "input": "images (B, 1, 28, 28) in [0, 1]"}
        return images.export_module(cfg, module, (examples,), trained.run_id, trained.steps, extra)
    module = gan.GeneratorExport(load_generator(cfg, state, torch.device("cpu")))
    extra = {"latent_dim": cfg.latent_dim, "module": "generator"}
    return images.export_module(cfg, module, images.generator_inputs(cfg, cfg.latent_dim), trained.run_id, trained.steps, extra)


# --------------------------------------------------------------------------- Prefect tasks


@task(name="langevin-train")
def train_task(cfg: LangevinConfig, prepared: PreparedData, run_id: str) -> images.ImageTrainOutput:
    return TRAINERS[cfg.family](cfg, prepared, run_id)


@task(name="langevin-evaluate")
def evaluate_task(cfg: LangevinConfig, prepared: PreparedData, trained: images.ImageTrainOutput, evaluator: images.EvaluatorRef) -> dict[str, float]:
    return evaluate(cfg, prepared, trained, evaluator)


@task(name="langevin-export")
def export_task(cfg: LangevinConfig, trained: images.ImageTrainOutput) -> str:
    return export(cfg, trained)
