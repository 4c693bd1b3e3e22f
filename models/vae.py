"""Variational autoencoders (Kingma & Welling 2014, "Auto-Encoding Variational Bayes") for 1x28x28 images.

Three encoders/decoders share one interface so that callers treat them uniformly:
`encode(x, y=None) -> (mu, logvar)`, `decode(z, y=None) -> logits`, `forward(x, y=None) -> (logits, mu, logvar)`,
plus the attributes `conditional: bool` and `latent_dim: int`. The unconditional models ignore `y`;
the conditional one (CVAE) requires int64 labels in [0, n_classes).

Images are float in [0, 1] inside these models (the data pipeline scales uint8 pixels before they arrive);
the decoders return Bernoulli LOGITS, and `VAEDecoder` turns them into probabilities for export.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_PIXELS = 28 * 28


# --------------------------------------------------------------------------- networks


class VAE(nn.Module):
    """The classic MLP VAE: 784-hidden-(mu, logvar) encoder, latent-hidden-784 Bernoulli decoder, ReLU."""

    def __init__(self, latent_dim: int = 20, hidden: int = 400) -> None:
        super().__init__()
        self.conditional = False
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Linear(N_PIXELS, hidden), nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, N_PIXELS))

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim); y is ignored."""
        h = self.encoder(x.flatten(1))  # (B, hidden)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Bernoulli logits (B, 1, 28, 28) of p(x|z); y is ignored."""
        return self.decoder(z).view(-1, 1, 28, 28)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, mu, logvar) for one reparameterized sample z ~ q(z|x)."""
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar


class ConvVAE(nn.Module):
    """Convolutional VAE: two stride-2 convs (28 -> 14 -> 7) then linear heads; the decoder mirrors it."""

    def __init__(self, latent_dim: int = 20, channels: int = 32) -> None:
        super().__init__()
        self.conditional = False
        self.latent_dim = latent_dim
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1),  # (B, c, 14, 14)
            nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),  # (B, 2c, 7, 7)
            nn.ReLU(),
            nn.Flatten(),  # (B, 2c * 49)
        )
        self.to_mu = nn.Linear(2 * c * 49, latent_dim)
        self.to_logvar = nn.Linear(2 * c * 49, latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, 2 * c * 49), nn.ReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),  # (B, c, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)
        )
        self.channels = c

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (B, latent_dim); y is ignored."""
        h = self.encoder(x.view(-1, 1, 28, 28))
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Bernoulli logits (B, 1, 28, 28) of p(x|z); y is ignored."""
        h = self.from_latent(z).view(-1, 2 * self.channels, 7, 7)
        return self.decoder(h)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, mu, logvar) for one reparameterized sample z ~ q(z|x)."""
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar


class CVAE(nn.Module):
    """Conditional MLP VAE (Sohn et al. 2015): the one-hot label joins the input of encoder and decoder."""

    def __init__(self, latent_dim: int = 20, hidden: int = 400, n_classes: int = 10) -> None:
        super().__init__()
        self.conditional = True
        self.latent_dim = latent_dim
        self.n_classes = n_classes
        self.encoder = nn.Sequential(nn.Linear(N_PIXELS + n_classes, hidden), nn.ReLU())
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim + n_classes, hidden), nn.ReLU(), nn.Linear(hidden, N_PIXELS))

    def _one_hot(self, y: Tensor | None, like: Tensor) -> Tensor:
        if y is None:
            raise ValueError("CVAE needs labels y (int64 in [0, n_classes)); pass the batch's labels")
        return F.one_hot(y, self.n_classes).to(like.dtype)  # (B, n_classes)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar) of q(z|x, y), each (B, latent_dim)."""
        h = self.encoder(torch.cat([x.flatten(1), self._one_hot(y, x)], dim=1))  # (B, hidden)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Bernoulli logits (B, 1, 28, 28) of p(x|z, y)."""
        return self.decoder(torch.cat([z, self._one_hot(y, z)], dim=1)).view(-1, 1, 28, 28)

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, mu, logvar) for one reparameterized sample z ~ q(z|x, y)."""
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar), y), mu, logvar


AnyVAE = VAE | ConvVAE | CVAE  # the one interface: encode, decode, forward, conditional, latent_dim


class VAEDecoder(nn.Module):
    """What gets exported: latent codes (and labels) to pixel probabilities in [0, 1]; scriptable.

    `y` is always a (B,) int64 tensor so that every exported decoder has one signature;
    unconditional decoders ignore it (pass zeros).
    """

    def __init__(self, model: AnyVAE) -> None:
        super().__init__()
        self.model = model
        self.latent_dim: int = int(model.latent_dim)
        self.conditional: bool = bool(model.conditional)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Pixel probabilities (B, 1, 28, 28) for codes z (B, latent_dim) and labels y (B,)."""
        return torch.sigmoid(self.model.decode(z, y))  # (B, 1, 28, 28) in [0, 1]


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """z = mu + sigma * eps with eps ~ N(0, I), differentiable in (mu, logvar) (Kingma & Welling 2014, eq. 10)."""
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


# --------------------------------------------------------------------------- losses


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per image (B,), in nats."""
    # Kingma & Welling 2014, appendix B: -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    return -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """-log p(x|z) per image (B,) for a Bernoulli decoder: BCE with logits summed over pixels."""
    return F.binary_cross_entropy_with_logits(logits.flatten(1), x.flatten(1), reduction="none").sum(dim=1)


def vae_loss(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Batch mean of the per-image negative ELBO in nats, and its per-image-mean parts "recon" and "kl"."""
    # Kingma & Welling 2014, eq. 10: -ELBO = -log p(x|z) + KL(q(z|x) || p(z)), one sample z per image
    recon = bernoulli_nll(logits, x)  # (B,)
    kl = kl_divergence(mu, logvar)  # (B,)
    return (recon + kl).mean(), {"recon": recon.mean(), "kl": kl.mean()}


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor | None = None
) -> dict[str, Tensor]:
    """One gradient step on the negative ELBO; returns detached "train/loss", "train/recon", "train/kl"."""
    logits, mu, logvar = model(x, y)
    loss, parts = vae_loss(logits, x, mu, logvar)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"train/loss": loss.detach(), "train/recon": parts["recon"].detach(), "train/kl": parts["kl"].detach()}


# --------------------------------------------------------------------------- evaluation and sampling


@torch.no_grad()
def negative_elbo(model: AnyVAE, x_uint8: Tensor, y: Tensor, batch: int = 1000) -> float:
    """Mean negative ELBO per image, in nats, over a whole split of uint8 images (N, 1, 28, 28)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(x_uint8), batch):
        x = x_uint8[start : start + batch].float() / 255.0
        labels = y[start : start + batch] if model.conditional else None
        logits, mu, logvar = model(x, labels)
        total += float(bernoulli_nll(logits, x).sum() + kl_divergence(mu, logvar).sum())
    model.train(was_training)
    return total / len(x_uint8)


@torch.no_grad()
def importance_weighted_nll(
    model: AnyVAE,
    x: Tensor,
    y: Tensor | None = None,
    k: int = 100,
    chunk: int = 25,
    generator: torch.Generator | None = None,
) -> Tensor:
    """-log p(x) per image (B,) in nats, estimated with k importance samples from q(z|x)."""
    # Burda et al. 2016 (IWAE), eq. 8: log p(x) ~ logsumexp_i [log p(x|z_i) + log p(z_i) - log q(z_i|x)] - log k.
    # An upper bound on the true NLL in expectation that tightens as k grows; k = 1 is the negative ELBO.
    if k < 1 or chunk < 1:
        raise ValueError(f"k={k}, chunk={chunk}; both must be >= 1")
    mu, logvar = model.encode(x, y)  # (B, D) each
    std = torch.exp(0.5 * logvar)
    b, d = mu.shape
    log_2pi = math.log(2.0 * math.pi)
    # all the noise up front (k * B * D, small next to the decoder's k * B * 784): chunking does not change the draws
    noise = torch.randn(k, b, d, generator=generator, dtype=mu.dtype, device=mu.device)  # (k, B, D)
    log_weights = []
    for start in range(0, k, chunk):
        eps = noise[start : start + chunk]  # (c, B, D)
        c = eps.shape[0]
        z = mu + std * eps  # (c, B, D)
        log_q = -0.5 * (eps.pow(2) + logvar + log_2pi).sum(dim=2)  # (c, B)
        log_prior = -0.5 * (z.pow(2) + log_2pi).sum(dim=2)  # (c, B)
        labels = None if y is None else y.repeat(c)  # (c * B,), matches z's flattening order
        logits = model.decode(z.reshape(c * b, d), labels)  # (c * B, 1, 28, 28)
        log_lik = -bernoulli_nll(logits, x.flatten(1).repeat(c, 1)).view(c, b)  # (c, B)
        log_weights.append(log_lik + log_prior - log_q)
    log_px = torch.logsumexp(torch.cat(log_weights, dim=0), dim=0) - math.log(k)  # (B,)
    return -log_px


@torch.no_grad()
def sample(model: AnyVAE, n: int, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """n images (n, 1, 28, 28) in [0, 1]: decoder probabilities at z ~ N(0, I) (not binarized)."""
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent_dim, generator=generator, device=device)
    return torch.sigmoid(model.decode(z, y))
