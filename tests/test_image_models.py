"""The image generative models (VAE family, DCGAN), the LeNet judge and FID, on tiny synthetic data with known
answers."""

from __future__ import annotations

import copy
import io
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor, nn

from models import fid, gan, lenet, vae
from models.image_trainer import ImageTrainer, Selection


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads, and on a shared CPU they stall each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence only torch's deprecation notice for torch.jit.*, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
        yield


def blocks(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """n binary images (n, 1, 28, 28) in {0, 1}, each one bright rectangle, and labels i % 10."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    for i in range(n):
        top, left = torch.randint(0, 14, (2,), generator=g).tolist()
        height, width = torch.randint(6, 14, (2,), generator=g).tolist()
        x[i, 0, top : top + height, left : left + width] = 1.0
    return x, torch.arange(n) % 10


VAE_BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "vae": lambda: vae.VAE(latent_dim=4, hidden=32),
    "conv_vae": lambda: vae.ConvVAE(latent_dim=4, channels=4),
    "cvae": lambda: vae.CVAE(latent_dim=4, hidden=32),
}


# --------------------------------------------------------------------------- VAE losses


def test_kl_divergence_of_known_gaussians() -> None:
    # mu = (1, 1), sigma = 1: KL = 1/2 |mu|^2 = 1 nat
    torch.testing.assert_close(vae.kl_divergence(torch.ones(1, 2), torch.zeros(1, 2)), torch.tensor([1.0]))
    # mu = 0, sigma^2 = e: KL = 1/2 (e - 1 - log e) = (e - 2) / 2
    torch.testing.assert_close(vae.kl_divergence(torch.zeros(1, 1), torch.ones(1, 1)), torch.tensor([(math.e - 2) / 2]))
    # N(0, I) against itself: 0; and per image, not summed over the batch
    assert vae.kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)).tolist() == [0.0, 0.0, 0.0]
    # random case against torch.distributions
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(vae.kl_divergence(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))


def test_bernoulli_nll_by_hand() -> None:
    # logits (2, -1) for pixels (1, 0): -log sigmoid(2) - log(1 - sigmoid(-1)) = log(1 + e^-2) + log(1 + e^-1)
    got = vae.bernoulli_nll(torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]]))
    torch.testing.assert_close(got, torch.tensor([math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))]))
    # logit 0 is a coin flip: log 2 per pixel, summed per image whatever the target in [0, 1]
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(vae.bernoulli_nll(torch.zeros(2, 1, 28, 28), x), torch.full((2,), 784 * math.log(2)))


def test_vae_loss_is_the_batch_mean_of_recon_plus_kl() -> None:
    torch.manual_seed(0)
    x, _ = blocks(6)
    logits, mu, logvar = torch.randn(6, 1, 28, 28), torch.randn(6, 4), torch.randn(6, 4)
    loss, parts = vae.vae_loss(logits, x, mu, logvar)
    per_image = vae.bernoulli_nll(logits, x) + vae.kl_divergence(mu, logvar)  # (6,)
    torch.testing.assert_close(loss, per_image.mean())
    torch.testing.assert_close(loss, parts["recon"] + parts["kl"])
    assert set(parts) == {"recon", "kl"} and parts["recon"].ndim == 0


# --------------------------------------------------------------------------- importance-weighted NLL


@pytest.fixture(scope="module")
def fitted_vae() -> tuple[nn.Module, Tensor]:
    """A tiny VAE fitted briefly to 8 block images, so that the posterior is far from the prior."""
    torch.manual_seed(0)
    model = vae.VAE(latent_dim=4, hidden=32)
    x, _ = blocks(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        vae.train_step(model, optimizer, x)
    return model, x


def test_iwae_tightens_the_elbo(fitted_vae: tuple[nn.Module, Tensor]) -> None:
    model, x = fitted_vae
    g = torch.Generator().manual_seed(1)
    copies = x.repeat(500, 1, 1, 1)  # (500 * 8, 1, 28, 28): 500 independent draws per image in one batch
    with torch.no_grad():  # the negative ELBO per image: 500-sample recon plus analytic KL
        mu, logvar = model.encode(x)
        z = (mu + torch.exp(0.5 * logvar) * torch.randn(500, 8, 4, generator=g)).view(-1, 4)  # (500 * 8, 4)
        recon = vae.bernoulli_nll(model.decode(z), copies).view(500, 8)
        neg_elbo = recon.mean(0) + vae.kl_divergence(mu, logvar)  # (8,)
        recon_se = recon.std(0) / math.sqrt(500)  # (8,)
    # k = 1 is an unbiased estimate of the negative ELBO (with a Monte Carlo KL): a sign slip in log q or log p(z)
    # shows here
    iw1 = vae.importance_weighted_nll(model, copies, k=1, generator=g).view(500, 8)
    tolerance = 4 * torch.sqrt(recon_se**2 + (iw1.std(0) / math.sqrt(500)) ** 2)
    assert ((iw1.mean(0) - neg_elbo).abs() < tolerance).all(), (iw1.mean(0), neg_elbo, tolerance)
    # more samples: a tighter bound on -log p(x), strictly below the negative ELBO for every image
    iw100 = vae.importance_weighted_nll(model, x, k=100, generator=g)
    iw1000 = vae.importance_weighted_nll(model, x, k=1000, chunk=250, generator=g)
    assert iw100.shape == (8,) and torch.isfinite(iw100).all()
    assert (iw100 < neg_elbo - 3 * recon_se).all(), (iw100, neg_elbo)
    gap = (neg_elbo - iw1000).mean().item()  # about 2 nats here; an estimator stuck at the ELBO gives 0
    assert gap > 0.5, gap


def test_iwae_chunking_does_not_change_the_estimate(fitted_vae: tuple[nn.Module, Tensor]) -> None:
    model, x = fitted_vae
    whole = vae.importance_weighted_nll(model, x, k=400, chunk=400, generator=torch.Generator().manual_seed(0))
    pieces = vae.importance_weighted_nll(model, x, k=400, chunk=7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-4)  # the same draws, decoded in other batch sizes
    other = vae.importance_weighted_nll(model, x, k=400, chunk=7, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(other, whole)  # and the generator does drive the draws
    with pytest.raises(ValueError, match="k=0"):
        vae.importance_weighted_nll(model, x, k=0)


def test_iwae_of_a_conditional_vae_by_hand() -> None:
    torch.manual_seed(0)
    model = vae.CVAE(latent_dim=4, hidden=16)
    x, y = blocks(5)
    nll = vae.importance_weighted_nll(model, x, y, k=3, chunk=2, generator=torch.Generator().manual_seed(3))
    # the same draws, (k, B, D) in one call, weighed one sample at a time with torch.distributions
    noise = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        mu, logvar = model.encode(x, y)
        q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
        prior = torch.distributions.Normal(torch.zeros(4), torch.ones(4))
        log_w = []
        for eps in noise:
            z = mu + torch.exp(0.5 * logvar) * eps  # (5, 4)
            log_lik = torch.distributions.Bernoulli(logits=model.decode(z, y)).log_prob(x).flatten(1).sum(1)
            log_w.append(log_lik + prior.log_prob(z).sum(1) - q.log_prob(z).sum(1))
    expected = -(torch.logsumexp(torch.stack(log_w), dim=0) - math.log(3))  # (5,)
    torch.testing.assert_close(nll, expected, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="CVAE needs labels"):
        vae.importance_weighted_nll(model, x, k=2)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", list(VAE_BUILDERS))
def test_vae_shapes_and_interface(name: str) -> None:
    torch.manual_seed(0)
    model = VAE_BUILDERS[name]()
    x, y = blocks(3)
    logits, mu, logvar = model(x, y)
    assert logits.shape == (3, 1, 28, 28) and mu.shape == (3, 4) and logvar.shape == (3, 4)
    assert model.latent_dim == 4 and model.conditional == (name == "cvae")
    assert model.decode(torch.randn(3, 4), y).shape == (3, 1, 28, 28)
    images = vae.sample(model, 3, y)
    assert images.shape == (3, 1, 28, 28) and images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("n_classes", [0, 10])
def test_gan_shapes_and_ranges(n_classes: int) -> None:
    torch.manual_seed(0)
    generator = gan.Generator(latent_dim=8, channels=4, n_classes=n_classes)
    discriminator = gan.Discriminator(channels=4, n_classes=n_classes)
    y = torch.arange(5)
    fake = generator(torch.randn(5, 8), y)
    assert fake.shape == (5, 1, 28, 28) and fake.min() >= -1 and fake.max() <= 1
    assert discriminator(fake, y).shape == (5,)
    assert generator.conditional == discriminator.conditional == (n_classes > 0)
    images = gan.sample(generator.eval(), 5, y)
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    if n_classes:
        with pytest.raises(ValueError, match="needs labels"):
            generator(torch.randn(5, 8))
        with pytest.raises(ValueError, match="needs labels"):
            discriminator(fake)


def test_conditional_models_respond_to_the_label() -> None:
    torch.manual_seed(0)
    z = torch.randn(1, 8)
    generator = gan.Generator(latent_dim=8, channels=4, n_classes=10).eval()
    assert not torch.equal(generator(z, torch.tensor([3])), generator(z, torch.tensor([7])))
    cvae = vae.CVAE(latent_dim=8, hidden=16)
    assert not torch.equal(cvae.decode(z, torch.tensor([3])), cvae.decode(z, torch.tensor([7])))


def test_lenet_shapes() -> None:
    model = lenet.LeNet()
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10) and model.features(x).shape == (4, 84)
    assert lenet.LeNet(n_classes=3)(x).shape == (4, 3)


# --------------------------------------------------------------------------- learning checks


@pytest.mark.parametrize("name", list(VAE_BUILDERS))
def test_vae_loss_falls_on_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    model = VAE_BUILDERS[name]()
    x, y = blocks(16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = [vae.train_step(model, optimizer, x, y)["train/loss"].item() for _ in range(50)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * losses[0], (losses[0], losses[-5:])  # starts near 784 log 2 = 543 nats


@pytest.mark.parametrize("n_classes", [0, 10])
def test_gan_steps_stay_finite_and_move_the_weights(n_classes: int) -> None:
    torch.manual_seed(0)
    generator = gan.Generator(latent_dim=8, channels=4, n_classes=n_classes)
    discriminator = gan.Discriminator(channels=4, n_classes=n_classes)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real, labels = blocks(8)
    labels = labels if n_classes else None
    g_before = copy.deepcopy(generator.state_dict())
    d_before = copy.deepcopy(discriminator.state_dict())
    rng = torch.Generator().manual_seed(0)
    for _ in range(3):
        d_stats = gan.discriminator_step(generator, discriminator, opt_d, real, labels, 8, real_label=0.9, rng=rng)
        g_stats = gan.generator_step(generator, discriminator, opt_g, 8, labels, 8, rng=rng)
        stats = d_stats | g_stats
        assert set(stats) == {"train/d_loss", "train/g_loss", "train/d_real", "train/d_fake"}
        assert all(torch.isfinite(v) and not v.requires_grad for v in stats.values())
        assert 0 < stats["train/d_real"] < 1 and 0 < stats["train/d_fake"] < 1
    for before, model in ((g_before, generator), (d_before, discriminator)):
        for key, value in model.state_dict().items():
            if value.is_floating_point() and "running" not in key:
                assert not torch.equal(value, before[key]), key


def test_gan_steps_are_seedable() -> None:
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        generator, discriminator = gan.Generator(latent_dim=8, channels=4), gan.Discriminator(channels=4)
        opt_d = torch.optim.SGD(discriminator.parameters(), lr=0.1)
        rng = torch.Generator().manual_seed(5)
        results.append(gan.discriminator_step(generator, discriminator, opt_d, blocks(4)[0], None, 8, rng=rng))
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


def test_gan_losses_by_hand() -> None:
    zero = torch.zeros(4)
    torch.testing.assert_close(gan.discriminator_loss(zero, zero), torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(gan.generator_loss(zero), torch.tensor(math.log(2)))
    # one-sided smoothing: real targets 0.9, fake targets stay 0
    s = torch.sigmoid(torch.tensor(2.0))
    expected = -(0.9 * torch.log(s) + 0.1 * torch.log(1 - s)) + math.log(2)
    torch.testing.assert_close(gan.discriminator_loss(torch.full((3,), 2.0), zero, real_label=0.9), expected)
    # non-saturating: a confidently rejected fake (logit -10) still gets a gradient of about -1 per sample
    logits = torch.full((2,), -10.0, requires_grad=True)
    gan.generator_loss(logits).backward()
    torch.testing.assert_close(logits.grad, torch.full((2,), -0.5), atol=1e-4, rtol=0)


def test_dcgan_init_and_ranges() -> None:
    torch.manual_seed(0)
    generator = gan.Generator(latent_dim=100, channels=64)
    linear, bn = generator.project[0], generator.project[1]
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.002) and bn.weight.std().item() == pytest.approx(
        0.02, rel=0.1
    )
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(gan.to_unit(gan.from_unit(x)), x)
    assert gan.from_unit(torch.tensor([0.0, 1.0])).tolist() == [-1.0, 1.0]


def test_lenet_train_step_fits_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = lenet.LeNet()
    x, y = blocks(20)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    stats = [lenet.train_step(model, optimizer, x, y) for _ in range(60)]
    losses = [s["train/loss"].item() for s in stats]
    assert all(np.isfinite(losses)) and losses[-1] < 0.3 * losses[0], (losses[0], losses[-1])
    assert lenet.accuracy(model, x, y, batch_size=7) == pytest.approx(stats[-1]["train/accuracy"].item(), abs=0.1)
    assert model.training  # accuracy restores the mode


def test_accuracy_and_confusion_matrix_by_hand() -> None:
    pred, target = torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 2, 2, 0])
    expected = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 1, 2]])
    assert torch.equal(lenet.confusion_matrix(pred, target, n_classes=3), expected)
    model = lenet.LeNet(n_classes=3)
    x = torch.rand(9, 1, 28, 28)
    pred = model(x).argmax(1)
    assert lenet.accuracy(model, x, pred, batch_size=4) == 1.0
    assert lenet.accuracy(model, x, (pred + 1) % 3) == 0.0


# --------------------------------------------------------------------------- FID and mode coverage


def closed_form_fid(m1: Tensor, s1: Tensor, m2: Tensor, s2: Tensor) -> float:
    """Frechet distance between N(m1, diag s1) and N(m2, diag s2): covariances commute, the root is elementwise."""
    return float(((m1 - m2) ** 2).sum() + (s1 + s2 - 2 * torch.sqrt(s1 * s2)).sum())


M1, S1 = (
    torch.tensor([0.0, 0.0, 0.0, 0.0], dtype=torch.float64),
    torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64),
)
M2, S2 = (
    torch.tensor([1.0, 0.5, 0.0, -1.0], dtype=torch.float64),
    torch.tensor([1.5, 1.0, 0.5, 3.0], dtype=torch.float64),
)


def test_frechet_distance_of_diagonal_gaussians_is_exact() -> None:
    got = fid.frechet_distance(M1, torch.diag(S1), M2, torch.diag(S2))
    assert got == pytest.approx(closed_form_fid(M1, S1, M2, S2), abs=1e-8)
    assert fid.frechet_distance(M2, torch.diag(S2), M1, torch.diag(S1)) == pytest.approx(got, abs=1e-8)  # symmetric
    assert fid.frechet_distance(M1, torch.diag(S1), M1, torch.diag(S1)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(6), b @ b.T  # S1 S2 is not symmetric
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    root = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1 + sigma2 - 2 * root)
    got = fid.frechet_distance(
        torch.from_numpy(mu1), torch.from_numpy(sigma1), torch.from_numpy(mu2), torch.from_numpy(sigma2)
    )
    assert got == pytest.approx(expected, rel=1e-8)


def test_fid_of_sampled_gaussians_and_of_a_set_with_itself() -> None:
    g = torch.Generator().manual_seed(0)
    a = M1 + S1.sqrt() * torch.randn(20_000, 4, generator=g, dtype=torch.float64)  # (20000, 4)
    b = M2 + S2.sqrt() * torch.randn(20_000, 4, generator=g, dtype=torch.float64)
    assert fid.fid_from_features(a, a) < 1e-6
    # sampling error: mean estimates add about D * (s1 + s2) / N ~ 1e-3 and covariance entries wobble
    # by ~ sqrt(2 / N) * s ~ 0.01-0.03 each; 0.1 on a distance of ~4.2 is several standard errors
    assert fid.fid_from_features(a, b) == pytest.approx(closed_form_fid(M1, S1, M2, S2), abs=0.1)
    mu, sigma = fid.feature_statistics(a.float())
    assert mu.dtype == sigma.dtype == torch.float64 and sigma.shape == (4, 4)
    np.testing.assert_allclose(sigma.numpy(), np.cov(a.numpy(), rowvar=False), rtol=1e-5)


def test_fid_rejects_mismatched_statistics() -> None:
    with pytest.raises(ValueError, match="mismatched statistics"):
        fid.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(4), torch.eye(4))
    with pytest.raises(ValueError, match=r"expected \(N, D\) with N >= 2"):
        fid.feature_statistics(torch.zeros(1, 3))


def test_extract_features_batches_and_restores_the_mode() -> None:
    torch.manual_seed(0)
    model = lenet.LeNet()
    images = torch.rand(10, 1, 28, 28)
    features = fid.extract_features(model, images, batch_size=3)
    assert features.shape == (10, 84) and model.training
    torch.testing.assert_close(features, model.features(images).detach())


def test_class_histogram_and_entropy() -> None:
    logits = torch.eye(10).repeat(3, 1)  # every class predicted 3 times
    hist = fid.class_histogram(logits)
    torch.testing.assert_close(hist, torch.full((10,), 0.1, dtype=torch.float64))
    assert fid.entropy(hist) == pytest.approx(math.log(10))
    collapsed = fid.class_histogram(torch.eye(10)[[4] * 7])  # mode collapse onto class 4
    assert collapsed[4] == 1.0 and fid.entropy(collapsed) == 0.0
    assert fid.entropy(torch.tensor([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))


# --------------------------------------------------------------------------- TorchScript export and checkpoints


@pytest.mark.parametrize("name", list(VAE_BUILDERS))
def test_scripted_vae_decoder_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    decoder = vae.VAEDecoder(VAE_BUILDERS[name]()).eval()
    with quiet_jit():
        scripted = torch.jit.script(decoder)
    z, y = torch.randn(6, 4), torch.arange(6)
    with torch.no_grad():
        expected = decoder(z, y)
        got = scripted(z, y)
    assert expected.min() >= 0 and expected.max() <= 1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert scripted.latent_dim == 4 and scripted.conditional == (name == "cvae")


@pytest.mark.parametrize("n_classes", [0, 10])
def test_scripted_generator_matches_eager(n_classes: int) -> None:
    torch.manual_seed(0)
    generator = gan.Generator(latent_dim=8, channels=4, n_classes=n_classes)
    generator(torch.randn(16, 8), torch.arange(16) % 10)  # train-mode pass: batch-norm running stats move
    export = gan.GeneratorExport(generator).eval()
    with quiet_jit():
        scripted = torch.jit.script(export)
    z, y = torch.randn(5, 8), torch.arange(5)
    with torch.no_grad():
        expected = export(z, y)
        got = scripted(z, y)
    assert expected.min() >= 0 and expected.max() <= 1
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert scripted.latent_dim == 8 and scripted.conditional == (n_classes > 0)


def _round_trip(model: nn.Module, fresh: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict()}, buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True)["model"])
    return fresh


@pytest.mark.parametrize("name", list(VAE_BUILDERS))
def test_vae_checkpoint_round_trip(name: str) -> None:
    torch.manual_seed(0)
    model = VAE_BUILDERS[name]()
    torch.manual_seed(1)
    restored = _round_trip(model, VAE_BUILDERS[name]())
    x, y = blocks(4)
    z = torch.randn(4, 4)
    with torch.no_grad():
        for got, expected in zip(
            (*restored.encode(x, y), restored.decode(z, y)), (*model.encode(x, y), model.decode(z, y)), strict=True
        ):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_gan_and_lenet_checkpoint_round_trip() -> None:
    torch.manual_seed(0)
    generator, discriminator, classifier = gan.Generator(8, 4, 10), gan.Discriminator(4, 10), lenet.LeNet()
    y = torch.arange(6)
    generator(torch.randn(6, 8), y)  # move batch-norm running stats away from their defaults
    torch.manual_seed(1)
    pairs = [
        (generator.eval(), _round_trip(generator, gan.Generator(8, 4, 10)).eval()),
        (discriminator.eval(), _round_trip(discriminator, gan.Discriminator(4, 10)).eval()),
        (classifier, _round_trip(classifier, lenet.LeNet())),
    ]
    z, x = torch.randn(6, 8), torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(pairs[0][1](z, y), pairs[0][0](z, y), rtol=0, atol=0)
        torch.testing.assert_close(pairs[1][1](x, y), pairs[1][0](x, y), rtol=0, atol=0)
        torch.testing.assert_close(pairs[2][1](x), pairs[2][0](x), rtol=0, atol=0)


# --------------------------------------------------------------------------- the val/fid_lenet curve and kept weights


class ScriptedTrainer(ImageTrainer):
    """A linear layer nudged by noisy SGD; its samples carry their epoch, which a scripted judge maps to a score."""

    def __init__(self, scores: dict[int, float], every: int, keep_best: bool, scored: bool = True) -> None:
        images = torch.randint(0, 256, (8, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        judge = lambda x: scores[int(x[0, 0, 0, 0])]  # noqa: E731
        picks = Selection(judge, every, samples=4, seed=3, keep_best=keep_best) if scored else None
        super().__init__(images, torch.zeros(8, dtype=torch.long), 2, epochs=5, max_steps=None, selection=picks)
        self.model = nn.Linear(4, 1)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.snapshots: dict[int, dict[str, Tensor]] = {}

    def train_batch(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        loss = (self.model(x.flatten(1)) - torch.randn(len(x), 1)).pow(2).mean()  # the global RNG: training's stream
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"train/loss": loss.detach()}

    def prior_samples(self, n: int) -> Tensor:
        torch.rand(100)  # draws from the global RNG, as Langevin chains and batch-norm calibration do
        self.snapshots[self.epochs_done] = copy.deepcopy(self.model.state_dict())
        return torch.full((n, 1, 2, 2), float(self.epochs_done))

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}


def run_to_end(trainer: ScriptedTrainer, stop_at: int | None = None) -> list[tuple[int, dict[str, float]]]:
    """Step `trainer` as the driver does (to its budget, or to step `stop_at`); the reports' metrics by epoch."""
    curve = []
    while not trainer.done() and trainer.steps != stop_at:
        trainer.step()
        curve += [(trainer.epochs_done, r.metrics) for r in trainer.reports() if r.metrics]
    if trainer.done():
        trainer.finish()
    return curve


SCRIPT = {1: 5.0, 2: 2.0, 3: 3.0, 4: float("nan"), 5: 4.0}


def test_val_fid_is_reported_every_n_epochs_and_after_the_last() -> None:
    torch.manual_seed(0)
    curve = run_to_end(ScriptedTrainer(SCRIPT, every=2, keep_best=True))
    assert [epoch for epoch, _ in curve] == [2, 4, 5]  # every 2 epochs, and the last (5) too
    scores = [m["val/fid_lenet"] for _, m in curve]
    assert scores[0] == 2.0 and math.isnan(scores[1]) and scores[2] == 4.0  # a NaN score is reported as it is
    assert all(m["perf/val_fid_seconds"] >= 0 for _, m in curve)


def test_the_best_scored_epochs_weights_are_kept_and_resume_carries_them() -> None:
    torch.manual_seed(0)
    best = ScriptedTrainer(SCRIPT, every=1, keep_best=True)
    run_to_end(best)
    assert best.kept_epoch == 2 and best.best["fid"] == 2.0  # the NaN of epoch 4 is never the best
    for name, tensor in best.model.state_dict().items():
        torch.testing.assert_close(tensor, best.snapshots[2][name], rtol=0, atol=0)
    summary = best.summary(1.0, 0)
    assert summary["train/kept_epoch"] == 2 and summary["val/fid_lenet_best"] == 2.0

    torch.manual_seed(0)
    last = ScriptedTrainer(SCRIPT, every=1, keep_best=False)
    run_to_end(last)
    torch.manual_seed(0)
    unscored = ScriptedTrainer(SCRIPT, every=1, keep_best=False, scored=False)
    run_to_end(unscored)
    assert last.kept_epoch == 5 and "train/kept_epoch" in last.summary(1.0, 0)
    for name, tensor in unscored.model.state_dict().items():  # scoring left training's RNG stream alone
        torch.testing.assert_close(last.model.state_dict()[name], tensor, rtol=0, atol=0)
        torch.testing.assert_close(last.snapshots[5][name], tensor, rtol=0, atol=0)

    torch.manual_seed(0)
    first = ScriptedTrainer(SCRIPT, every=1, keep_best=True)
    run_to_end(first, stop_at=13)  # mid-epoch 4, after the best (2) was scored
    saved, rng = copy.deepcopy(first.state_dict()), torch.get_rng_state()
    resumed = ScriptedTrainer(SCRIPT, every=1, keep_best=True)
    resumed.load_state_dict(saved)
    torch.set_rng_state(rng)
    assert resumed.best["epoch"] == 2
    run_to_end(resumed)
    assert resumed.kept_epoch == 2
    for name, tensor in best.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
