"""Langevin dynamics, the descriptor's and the generator's updates, divergence detection and export parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from models import gan, langevin
from rlgen.export.parity import check_parity
from rlgen.export.torchscript import script_module


class QuadraticScore(nn.Module):
    """f(x) = -1/2 (x - mu)^T A (x - mu) for 2-D points x (B, 2): a Gaussian energy with a closed form."""

    def __init__(self, mu: Tensor, precision: Tensor) -> None:
        super().__init__()
        self.mu, self.precision = mu, precision

    def forward(self, x: Tensor) -> Tensor:
        d = x - self.mu
        return -0.5 * ((d @ self.precision) * d).sum(1)


def test_langevin_recovers_the_mean_and_covariance_of_a_gaussian() -> None:
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -0.5])
    a = torch.tensor([[2.0, 0.6], [0.6, 1.0]])
    s = 2.0
    # p(x) ~ exp(f(x)) N(0, s^2 I) is Gaussian with precision A + I / s^2 and mean (A + I / s^2)^-1 A mu
    precision = a + torch.eye(2) / s**2
    cov = torch.linalg.inv(precision)
    mean = cov @ a @ mu
    x, _ = langevin.langevin_descriptor(
        QuadraticScore(mu, a), torch.zeros(4000, 2), steps=1500, step_size=0.1, ref_sigma=s
    )
    # Tolerance: 4000 independent chains give a standard error of about 0.02 on each mean and about 2% on
    # each covariance entry; the step size 0.1 adds an O(d^2) bias of about 1% (unadjusted Langevin).
    torch.testing.assert_close(x.mean(0), mean, atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.05, rtol=0.06)


def test_cooled_langevin_without_noise_climbs_to_the_mode() -> None:
    mu = torch.tensor([0.3, 0.2])
    x, snapshots = langevin.langevin_descriptor(
        QuadraticScore(mu, torch.eye(2)),
        torch.zeros(5, 2),
        steps=400,
        step_size=0.3,
        ref_sigma=1e3,
        noise=0.0,
        snapshot_at=(0, 200, 400),
    )
    torch.testing.assert_close(x, mu.expand(5, 2), atol=1e-3, rtol=0)
    assert len(snapshots) == 3 and torch.equal(snapshots[0], torch.zeros(5, 2)) and torch.equal(snapshots[2], x)


def test_descriptor_step_raises_f_on_data_and_lowers_it_on_samples() -> None:
    torch.manual_seed(0)
    descriptor = langevin.Descriptor(channels=4)
    real = torch.rand(16, 1, 28, 28)  # in [0, 1]
    synth = torch.rand(16, 1, 28, 28) * 2 - 1  # in [-1, 1]
    with torch.no_grad():
        before_real, before_synth = descriptor(gan.from_unit(real)).mean(), descriptor(synth).mean()
    stats = langevin.descriptor_step(descriptor, torch.optim.SGD(descriptor.parameters(), lr=1e-3), real, synth)
    with torch.no_grad():
        after_real, after_synth = descriptor(gan.from_unit(real)).mean(), descriptor(synth).mean()
    assert after_real > before_real and after_synth < before_synth
    assert float(stats["train/gap_synth_minus_real"]) == pytest.approx(float(before_synth - before_real), rel=1e-5)


def test_alternating_back_propagation_lowers_reconstruction_error() -> None:
    torch.manual_seed(0)
    centres = torch.rand(32, 2, 1, 1) * 14 + 7  # a tiny set from a 2-D family: blobs at random places
    grid = torch.arange(28.0)
    images = torch.exp(
        -((grid.view(1, 28, 1) - centres[:, :1]) ** 2 + (grid.view(1, 1, 28) - centres[:, 1:]) ** 2) / 18
    )
    images = images.unsqueeze(1)  # (32, 1, 28, 28) in [0, 1]
    target = gan.from_unit(images)
    generator = gan.Generator(latent_dim=4, channels=8)
    optimizer = torch.optim.Adam(generator.parameters(), lr=3e-3)
    z = torch.randn(32, 4)
    first = float(langevin.reconstruction_mse(generator, z, images))
    for _ in range(60):
        z = langevin.langevin_posterior(generator, z, target, steps=5, step_size=0.1, sigma=0.3)
        langevin.generator_step(generator, optimizer, z, target, sigma=0.3)
    last = float(langevin.reconstruction_mse(generator, z, images))
    assert last < 0.5 * first


def test_divergence_names_the_step_and_step_size() -> None:
    explosive = QuadraticScore(torch.zeros(2), -torch.eye(2) * 50)  # f grows without bound: chains run away
    with pytest.raises(
        langevin.LangevinDivergence, match=r"images diverged at Langevin step \d+/50 with step size 0.5"
    ):
        langevin.langevin_descriptor(explosive, torch.ones(3, 2), steps=50, step_size=0.5, ref_sigma=10.0)


def test_a_non_finite_score_is_a_divergence() -> None:
    class NaNScore(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x * float("nan")).sum(1)

    with pytest.raises(langevin.LangevinDivergence, match="step 1/3"):
        langevin.langevin_descriptor(NaNScore(), torch.zeros(2, 2), steps=3, step_size=0.1, ref_sigma=1.0)
    generator = gan.Generator(latent_dim=2, channels=4)
    with pytest.raises(
        langevin.LangevinDivergence, match="latent vectors diverged at Langevin step 1/4 with step size 1e\\+06"
    ):
        langevin.langevin_posterior(
            generator, torch.zeros(3, 2), torch.zeros(3, 1, 28, 28), steps=4, step_size=1e6, sigma=0.3
        )


def test_chain_starts() -> None:
    mean = torch.full((1, 28, 28), -0.5)
    assert torch.equal(langevin.ChainStarts("mean", mean).fresh(3), mean.expand(3, 1, 28, 28))
    noise = langevin.ChainStarts("noise", mean).fresh(500)
    assert noise.min() >= -1 and noise.max() <= 1 and abs(float(noise.mean())) < 0.01
    persistent = langevin.ChainStarts("persistent", mean, buffer_size=50, restart=0.0)
    starts, slots = persistent.draw(10)
    persistent.keep(slots, torch.full_like(starts, 3.0))
    assert torch.equal(persistent.buffer[slots], torch.ones(10, 1, 28, 28))  # kept, clamped to the data range
    with pytest.raises(ValueError, match="unknown chain start 'zeros'"):
        langevin.ChainStarts("zeros", mean)


def test_batch_norm_calibration_matches_prior_batches() -> None:
    torch.manual_seed(0)
    generator = gan.Generator(latent_dim=6, channels=8)
    with torch.no_grad():
        generator(torch.randn(64, 6) * 3 + 2)  # running statistics of latents far from the prior
    langevin.calibrate_batch_norm(generator, 6, torch.device("cpu"), batches=40, batch_size=200)
    assert not generator.training
    z = torch.randn(2000, 6)
    with torch.no_grad():
        eval_mode = generator(z)
        generator.train()
        train_mode = generator(z)
    torch.testing.assert_close(eval_mode, train_mode, atol=0.05, rtol=0)


def test_exported_energy_and_generator_match_eager(tmp_path: Path) -> None:
    torch.manual_seed(0)
    energy = langevin.DescriptorEnergy(langevin.Descriptor(channels=4), ref_sigma=0.5).eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        expected = energy(x)
    f = energy.descriptor(gan.from_unit(x))
    torch.testing.assert_close(expected, -f + gan.from_unit(x).flatten(1).pow(2).sum(1) / 0.5, rtol=1e-5, atol=1e-4)
    path = script_module(energy, tmp_path / "energy.pt", {"module": "energy"})
    assert check_parity(path, (x,), {"forward": expected})["forward"].max_abs_diff <= 1e-5

    export = gan.GeneratorExport(gan.Generator(latent_dim=5, channels=8)).eval()
    z, y = torch.randn(8, 5), torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        images = export(z, y)
    path = script_module(export, tmp_path / "generator.pt", {"module": "generator"})
    assert check_parity(path, (z, y), {"forward": images})["forward"].max_abs_diff <= 1e-5


def likelihood_gradient(generator: nn.Module, z: Tensor, x: Tensor) -> Tensor:
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(-(x - generator(z)).pow(2).sum() / (2 * 0.3**2), z)
    return grad


def test_batch_norm_after_the_first_layer_hides_the_scale_of_the_latents() -> None:
    """Why the inferred latents drift from the prior: with batch norm after g's first layer, g in training mode
    gives the same images for a batch of z scaled or shifted as a whole, so the likelihood's gradient has no
    component along the batch's scale or shift. Every Langevin step along it then lengthens z (a step tangent to a
    sphere leaves it), and only the prior term, (d^2 / 2) z a step, pulls back. Without that batch norm, g sees
    the scale, and the likelihood holds it too."""
    torch.manual_seed(0)
    z, x = torch.randn(64, 8), torch.rand(64, 1, 28, 28) * 2 - 1
    blind = gan.Generator(8, 8).train()
    torch.testing.assert_close(blind(z * 1.7 + 0.4), blind(z), atol=2e-3, rtol=0)  # up to batch norm's epsilon
    grad = likelihood_gradient(blind, z, x)
    assert abs(float((grad * z).sum() / (grad.norm() * z.norm()))) < 1e-4  # cosine with the batch's scale direction
    assert float(grad.sum(dim=0).norm() / grad.norm()) < 1e-5  # and none along its shift
    seeing = gan.Generator(8, 8, project_norm=False).train()
    assert float((seeing(z * 1.7 + 0.4) - seeing(z)).abs().max()) > 0.05
    assert float(likelihood_gradient(seeing, z, x).sum(dim=0).norm() / grad.norm()) > 0.1


def test_the_energy_penalty_pulls_the_scores_towards_zero() -> None:
    torch.manual_seed(0)
    real, synth = torch.rand(16, 1, 28, 28), torch.rand(16, 1, 28, 28) * 2 - 1
    scores = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(1)
        descriptor = langevin.Descriptor(8)
        with torch.no_grad():  # scores far from 0, as a drifting descriptor's
            descriptor(synth)
            list(descriptor.parameters())[-1].add_(5.0)
        optimizer = torch.optim.SGD(descriptor.parameters(), lr=1e-2)
        for _ in range(20):
            stats = langevin.descriptor_step(descriptor, optimizer, real, synth, energy_penalty=alpha)
        scores[alpha] = float(stats["train/f_real"].abs() + stats["train/f_synth"].abs())
    assert scores[1.0] < 0.5 * scores[0.0], scores
