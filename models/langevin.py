"""Models made to work by Langevin dynamics: the energy-based descriptor net, the generator net trained by
alternating back-propagation, and their cooperative training.

- Descriptor: Xie, Lu, Zhu & Wu 2016, "A Theory of Generative ConvNet". p(x) is proportional to
  exp(f(x; theta)) N(0, s^2 I); samples come from Langevin chains on log p.
- Generator: Han, Lu, Zhu & Wu 2017, "Alternating Back-Propagation for Generator Network". x = g(z) + eps,
  eps ~ N(0, sigma^2 I), z ~ N(0, I); each training image keeps its own z, refined by Langevin on p(z | x).
- Coop: Xie, Lu, Gao, Zhu & Wu 2018, "Cooperative Training of Descriptor and Generator Networks". The
  generator proposes the descriptor's initial images and learns from the images the descriptor revised.

Images are in [-1, 1] inside this module (the generator is `models.gan.Generator`, tanh output) and in [0, 1]
at its edges, like the rest of rlgen: every `*_step` takes real images in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.errors import TrainingDiverged
from models.gan import from_unit, to_unit


class LangevinDivergence(TrainingDiverged):
    """A Langevin chain produced non-finite or exploding values; the message names the step and step size."""


class Descriptor(nn.Module):
    """f(x; theta): a ConvNet scoring images (B, 1, 28, 28) in [-1, 1], one number each (B,); higher = likelier.

    SiLU activations keep grad_x f smooth, which Langevin dynamics follows; no batch norm, so the score of an
    image does not depend on the rest of its batch.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # (B, c, 14, 14)
            nn.SiLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # (B, 2c, 7, 7)
            nn.SiLU(),
            nn.Conv2d(2 * c, 4 * c, 3, padding=1),  # (B, 4c, 7, 7)
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(4 * c * 7 * 7, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Scores f(x) (B,) of images x (B, 1, 28, 28) in [-1, 1]."""
        return self.net(x).squeeze(1)


class DescriptorEnergy(nn.Module):
    """What gets exported: images in [0, 1] -> energy -log p(x) + const = -f(x) + |x|^2 / (2 s^2), per image (B,)."""

    def __init__(self, descriptor: Descriptor, ref_sigma: float) -> None:
        super().__init__()
        self.descriptor = descriptor
        self.ref_sigma: float = ref_sigma

    def forward(self, x: Tensor) -> Tensor:
        """Energies (B,) of images x (B, 1, 28, 28) in [0, 1]; lower is likelier under the model."""
        v = from_unit(x)
        return -self.descriptor(v) + v.flatten(1).pow(2).sum(1) / (2.0 * self.ref_sigma**2)


# --------------------------------------------------------------------------- Langevin dynamics


def check_chain(values: Tensor, what: str, step: int, steps: int, step_size: float, limit: float) -> None:
    """Raise LangevinDivergence if `values` hold a non-finite entry or one beyond +-limit."""
    worst = values.detach().abs().max()
    if not torch.isfinite(worst) or worst > limit:
        raise LangevinDivergence(
            f"Langevin dynamics on the {what} diverged at Langevin step {step}/{steps} with step size "
            f"{step_size:g}: max |value| = {float(worst):.3g} (limit {limit:g}); lower the step size or the "
            "learning rate"
        )


def langevin_descriptor(
    descriptor: nn.Module,
    x: Tensor,
    steps: int,
    step_size: float,
    ref_sigma: float,
    noise: float = 1.0,
    limit: float = 100.0,
    snapshot_at: tuple[int, ...] = (),
) -> tuple[Tensor, list[Tensor]]:
    """Run `steps` Langevin updates on log p(x) = f(x) - |x|^2 / (2 s^2) from x (B, ...), the whole batch at once.

    x <- x + (d^2 / 2) (grad_x f(x) - x / s^2) + noise * d * N(0, I)   (Xie et al. 2016, eq. 9; noise = 1 is
    exact Langevin, noise < 1 a cooled chain). Returns the final images, detached, and copies of the chain
    after each step listed in `snapshot_at` (0 = the start).
    """
    x = x.detach()
    snapshots = [x.clone()] if 0 in snapshot_at else []
    for t in range(1, steps + 1):
        with torch.enable_grad():  # also under no_grad: sampling for evaluation needs grad_x f
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(descriptor(x).sum(), x)  # each f(x_i) depends on x_i alone
        with torch.no_grad():
            x = x + 0.5 * step_size**2 * (grad - x / ref_sigma**2) + noise * step_size * torch.randn_like(x)
        check_chain(x, "images", t, steps, step_size, limit)
        if t in snapshot_at:
            snapshots.append(x.clone())
    return x.detach(), snapshots


def langevin_posterior(
    generator: nn.Module, z: Tensor, x: Tensor, steps: int, step_size: float, sigma: float, limit: float = 100.0
) -> Tensor:
    """Langevin on log p(z | x) = -|x - g(z)|^2 / (2 sigma^2) - |z|^2 / 2 + const for latents z (B, d), x in [-1, 1].

    z <- z + (delta^2 / 2) (grad_z log p(x | z) - z) + delta N(0, I)   (Han et al. 2017, eq. 4).
    """
    z = z.detach()
    for t in range(1, steps + 1):
        with torch.enable_grad():  # also under no_grad (reconstruction at evaluation)
            z.requires_grad_(True)
            log_likelihood = -(x - generator(z)).pow(2).sum() / (2.0 * sigma**2)
            (grad,) = torch.autograd.grad(log_likelihood, z)
        with torch.no_grad():
            z = z + 0.5 * step_size**2 * (grad - z) + step_size * torch.randn_like(z)
        check_chain(z, "latent vectors", t, steps, step_size, limit)
    return z.detach()


def mean_image_chains(mean_image: Tensor, n: int) -> Tensor:
    """n chain starts at the data's mean image (1, 28, 28) in [-1, 1], as the descriptor paper restarts them."""
    return mean_image.expand(n, *mean_image.shape).clone()


# --------------------------------------------------------------------------- updates


def descriptor_step(
    descriptor: nn.Module, optimizer: torch.optim.Optimizer, real: Tensor, synth: Tensor, energy_penalty: float = 0.0
) -> dict[str, Tensor]:
    """Raise f on real images (in [0, 1]) and lower it on synthesized ones (in [-1, 1]).

    The loss mean f(synth) - mean f(real) is the negative of the log-likelihood gradient's surrogate
    (Xie et al. 2016, eq. 7); it goes negative once f separates data from the chains' output, as expected.
    `energy_penalty` adds alpha * mean(f(real)^2 + f(synth)^2), which keeps the scores near 0 (Du & Mordatch 2019).
    """
    f_real = descriptor(from_unit(real))  # (B,)
    f_synth = descriptor(synth)  # (B,)
    gap = f_synth.mean() - f_real.mean()
    loss = gap + energy_penalty * (f_real.pow(2).mean() + f_synth.pow(2).mean()) if energy_penalty else gap
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {
        "train/f_real": f_real.detach().mean(),
        "train/f_synth": f_synth.detach().mean(),
        "train/gap_synth_minus_real": gap.detach(),
    }


def generator_step(
    generator: nn.Module, optimizer: torch.optim.Optimizer, z: Tensor, target: Tensor, sigma: float
) -> dict[str, Tensor]:
    """Fit g(z) to targets (B, 1, 28, 28) in [-1, 1]: minimize |target - g(z)|^2 / (2 sigma^2) per image (Han et al.
    eq. 6)."""
    squared = (target - generator(z)).pow(2).flatten(1).sum(1)  # (B,)
    loss = squared.mean() / (2.0 * sigma**2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    # mean squared error per pixel in [0, 1] units (a quarter of it in [-1, 1] units)
    return {"train/g_loss": loss.detach(), "train/recon_mse": squared.detach().mean() / (4.0 * target[0].numel())}


@torch.no_grad()
def reconstruction_mse(generator: nn.Module, z: Tensor, x: Tensor) -> Tensor:
    """Mean squared error per pixel, in [0, 1] units, of g(z) against images x (B, 1, 28, 28) in [0, 1]."""
    return (to_unit(generator(z)) - x).pow(2).mean()


# --------------------------------------------------------------------------- chain starts and batch norm


class ChainStarts:
    """Where the descriptor's chains start: the data's mean image (the paper), uniform noise in [-1, 1], or,
    when persistent, where earlier chains stopped (a buffer seeded from noise, 5% restarted per draw)."""

    def __init__(self, mode: str, mean_image: Tensor, buffer_size: int = 10_000, restart: float = 0.05) -> None:
        if mode not in {"mean", "noise", "persistent"}:
            raise ValueError(f"unknown chain start {mode!r}; use mean, noise or persistent")
        self.mode, self.mean_image, self.restart = mode, mean_image, restart  # mean_image (1, 28, 28) in [-1, 1]
        self.buffer = self.fresh(buffer_size) if mode == "persistent" else None

    def fresh(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n new starts (n, 1, 28, 28): the mean image, or uniform noise for noise and persistent chains."""
        if self.mode == "mean":
            return self.mean_image.expand(n, *self.mean_image.shape).clone()
        shape = (n, *self.mean_image.shape)
        return torch.rand(shape, generator=generator, device=self.mean_image.device) * 2.0 - 1.0

    def draw(self, n: int) -> tuple[Tensor, Tensor | None]:
        """Starts for n chains and their buffer slots (None unless persistent)."""
        if self.buffer is None:
            return self.fresh(n), None
        slots = torch.randint(0, len(self.buffer), (n,), device=self.buffer.device)
        starts = self.buffer[slots]
        restart = torch.rand(n, device=starts.device) < self.restart
        starts[restart] = self.fresh(int(restart.sum()))
        return starts, slots

    def keep(self, slots: Tensor | None, images: Tensor) -> None:
        """Store where persistent chains stopped (clamped to the data range)."""
        if self.buffer is not None and slots is not None:
            self.buffer[slots] = images.detach().clamp(-1.0, 1.0)


@torch.no_grad()
def calibrate_batch_norm(
    generator: nn.Module, latent_dim: int, device: torch.device, batches: int = 50, batch_size: int = 100
) -> None:
    """Reset the generator's batch-norm statistics to their average over prior samples z ~ N(0, I).

    Training runs batch norm on posterior (or proposal) latents and on Langevin's perturbed ones; sampling
    from the prior in eval mode needs the statistics of the prior's batches instead.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the calibration batches
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, latent_dim, device=device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    generator.eval()
