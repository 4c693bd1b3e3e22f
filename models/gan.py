"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional GANs") for 1x28x28.

Value ranges: the Generator emits images in [-1, 1] (tanh) and the Discriminator judges images in [-1, 1].
Everything at the edges of this module is in [0, 1], like the rest of rlgen: `discriminator_step` takes real
images in [0, 1] (the data pipeline scales pixels before they arrive) and maps them with `from_unit`;
`GeneratorExport` returns `to_unit(generator(z, y))`.

Conditioning: `n_classes > 0` makes a class-conditional GAN (Mirza & Osindero 2014). The Generator concatenates
a label embedding with z; the Discriminator embeds the label into an extra 28x28 input channel, so it judges
(x, y) pairs. Labels are int64 in [0, n_classes). Unconditional models (`n_classes = 0`) ignore y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def to_unit(x: Tensor) -> Tensor:
    """Map images from [-1, 1] (generator space) to [0, 1]."""
    return (x + 1.0) / 2.0


def from_unit(x: Tensor) -> Tensor:
    """Map images from [0, 1] to [-1, 1] (generator space)."""
    return x * 2.0 - 1.0


def weights_init(m: nn.Module) -> None:
    """DCGAN init (Radford et al. 2016, sec. 4): conv/linear weights N(0, 0.02), batch-norm scales N(1, 0.02)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- networks


class Generator(nn.Module):
    """z (B, latent_dim) [+ label] -> linear to 7x7 -> convT 14x14 -> convT 28x28, tanh output in [-1, 1]."""

    def __init__(
        self, latent_dim: int = 100, channels: int = 64, n_classes: int = 0, project_norm: bool = True
    ) -> None:
        """`project_norm=False` leaves batch norm out of the first layer, so that g sees the scale of z: with it, g is
        blind to a batch's scale and shift of z (what models/langevin.py's inference of z needs to know)."""
        super().__init__()
        self.latent_dim = latent_dim
        self.n_classes = n_classes
        self.conditional = n_classes > 0
        self.channels = channels
        self.embed = nn.Embedding(n_classes, n_classes) if n_classes > 0 else None
        c = channels
        linear = nn.Linear(latent_dim + n_classes, 2 * c * 7 * 7, bias=not project_norm)
        norm = [nn.BatchNorm1d(2 * c * 7 * 7)] if project_norm else []
        self.project = nn.Sequential(linear, *norm, nn.ReLU())  # batch norm in every hidden layer (DCGAN guideline)
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False),  # (B, c, 14, 14)
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28); no batch norm on the output
            nn.Tanh(),
        )
        self.apply(weights_init)
        if not project_norm:  # N(0, 0.02) weights expect a batch norm to rescale; without one, PyTorch's own init
            linear.reset_parameters()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """Images (B, 1, 28, 28) in [-1, 1]; y (B,) int64 is required when conditional, else ignored."""
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional Generator needs labels y (int64 in [0, n_classes))")
            z = torch.cat([z, self.embed(y)], dim=1)  # (B, latent_dim + n_classes)
        h = self.project(z).view(-1, 2 * self.channels, 7, 7)
        return self.upsample(h)


class Discriminator(nn.Module):
    """Images in [-1, 1] [+ label channel] -> conv 14x14 -> conv 7x7 -> one logit per image (B,)."""

    def __init__(self, channels: int = 64, n_classes: int = 0) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.conditional = n_classes > 0
        self.embed = nn.Embedding(n_classes, 28 * 28) if n_classes > 0 else None
        c = channels
        self.features = nn.Sequential(
            nn.Conv2d(2 if n_classes > 0 else 1, c, 4, stride=2, padding=1),  # (B, c, 14, 14); no BN on input layer
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False),  # (B, 2c, 7, 7)
            nn.BatchNorm2d(2 * c),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * c * 7 * 7, 1)
        self.apply(weights_init)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Logits (B,) that x (B, 1, 28, 28) in [-1, 1] is real (and matches its label y when conditional)."""
        if self.embed is not None:
            if y is None:
                raise ValueError("a conditional Discriminator needs labels y (int64 in [0, n_classes))")
            x = torch.cat([x, self.embed(y).view(-1, 1, 28, 28)], dim=1)  # (B, 2, 28, 28)
        return self.head(self.features(x)).squeeze(1)


class GeneratorExport(nn.Module):
    """What gets exported: (z, y) -> images in [0, 1]; y is always a (B,) int64 tensor, ignored if unconditional."""

    def __init__(self, generator: Generator) -> None:
        super().__init__()
        self.generator = generator
        self.latent_dim: int = generator.latent_dim
        self.conditional: bool = generator.conditional

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Images (B, 1, 28, 28) in [0, 1] for noise z (B, latent_dim) and labels y (B,)."""
        return to_unit(self.generator(z, y))  # (B, 1, 28, 28) in [0, 1]


# --------------------------------------------------------------------------- losses and updates


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, real_label: float = 1.0) -> Tensor:
    """-log D(x) - log(1 - D(G(z))), batch means; real_label < 1 is one-sided label smoothing."""
    # Goodfellow et al. 2014, eq. 1 (the D side of the minimax value); one-sided smoothing of the real
    # targets only: Salimans et al. 2016, "Improved Techniques for Training GANs", sec. 3.4
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss -log D(G(z)), batch mean."""
    # Goodfellow et al. 2014, sec. 3: maximize log D(G(z)) instead of minimizing log(1 - D(G(z)))
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def sample_latent(batch_size: int, latent_dim: int, device: torch.device, rng: torch.Generator | None = None) -> Tensor:
    """z ~ N(0, I) of shape (batch_size, latent_dim), from `rng` or the global generator."""
    return torch.randn(batch_size, latent_dim, generator=rng, device=device)


def discriminator_step(
    generator: Generator,
    discriminator: Discriminator,
    opt_d: torch.optim.Optimizer,
    real: Tensor,
    labels: Tensor | None,
    latent_dim: int,
    real_label: float = 1.0,
    rng: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One D update on real images in [0, 1] and as many fakes (drawn with the same labels)."""
    z = sample_latent(real.shape[0], latent_dim, real.device, rng)
    with torch.no_grad():
        fake = generator(z, labels)  # (B, 1, 28, 28) in [-1, 1]
    real_logits = discriminator(from_unit(real), labels)  # (B,)
    fake_logits = discriminator(fake, labels)  # (B,)
    loss = discriminator_loss(real_logits, fake_logits, real_label)
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return {
        "train/d_loss": loss.detach(),
        "train/d_real": torch.sigmoid(real_logits.detach()).mean(),
        "train/d_fake": torch.sigmoid(fake_logits.detach()).mean(),
    }


def generator_step(
    generator: Generator,
    discriminator: Discriminator,
    opt_g: torch.optim.Optimizer,
    batch_size: int,
    labels: Tensor | None,
    latent_dim: int,
    rng: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """One G update on the non-saturating loss; D's gradients are cleared by its next step's zero_grad."""
    device = next(generator.parameters()).device
    z = sample_latent(batch_size, latent_dim, device, rng)
    fake_logits = discriminator(generator(z, labels), labels)  # (B,)
    loss = generator_loss(fake_logits)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    return {"train/g_loss": loss.detach()}


@torch.no_grad()
def sample(generator: Generator, n: int, labels: Tensor | None = None, rng: torch.Generator | None = None) -> Tensor:
    """n images (n, 1, 28, 28) in [0, 1] from the generator in its current mode (call .eval() for BN stats)."""
    device = next(generator.parameters()).device
    return to_unit(generator(sample_latent(n, generator.latent_dim, device, rng), labels))
