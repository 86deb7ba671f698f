"""DCGAN-style generator and discriminator (Radford et al. 2016), optionally class-conditional.

The generator upsamples a latent vector with stride-2 transposed convolutions, the
discriminator downsamples with stride-2 convolutions; one stage per entry of ``channels``, so
``image_size`` must be ``base * 2**len(channels)`` (28 = 7 * 4, 32 = 4 * 8, 64 = 4 * 16).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("batch", "layer", "none")


def _base_size(image_size: int, stages: int) -> int:
    base = image_size // 2**stages
    if base < 2 or base * 2**stages != image_size:
        raise ValueError(
            f"image_size={image_size} is not base * 2**{stages} with base >= 2 ({stages} stride-2 stages, one "
            "per channels entry); use fewer channels entries or resize the data (provides.image_shape)"
        )
    return base


def dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind not in NORMS:
        raise ValueError(f"norm={kind!r} is not one of {NORMS}")
    # "layer": LayerNorm over (C, H, W), the critic's normalisation in WGAN-GP (BatchNorm would make
    # each sample's gradient penalty depend on the rest of the batch).
    return {"batch": nn.BatchNorm2d, "layer": lambda c: nn.GroupNorm(1, c), "none": lambda c: nn.Identity()}[kind](channels)


class DCGANGenerator(nn.Module):
    """``z (+ label embedding) -> ConvT(base x base) -> [ConvT 4x4 stride 2 -> BN -> ReLU]* ->
    ConvT 4x4 stride 2 -> tanh``: images in [-1, 1].

    Conditional (``conditional=True``): a learned embedding of the label, as long as ``z``, is
    concatenated to it.
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        num_classes: int,
        channels: Sequence[int] = (128, 64),
        conditional: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.conditional = latent_dim, num_classes, conditional
        base = _base_size(image_size, len(channels))
        self.embed = nn.Embedding(num_classes, latent_dim) if conditional else None
        in_dim = latent_dim * (2 if conditional else 1)
        # A transposed conv with kernel `base` on a 1x1 input is a linear layer to (C, base, base).
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, channels[0], base, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(True),
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(channels[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional generator needs labels")
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """``Conv 4x4 stride 2 -> LeakyReLU(0.2)`` then ``[Conv 4x4 stride 2 -> norm -> LeakyReLU]*``,
    flattened to one logit (no norm on the first layer, as in DCGAN).

    ``norm="batch"`` is DCGAN's discriminator; ``"layer"`` or ``"none"`` make the WGAN-GP critic.
    Conditional: projection discriminator (Miyato & Koyama 2018), the logit plus the inner
    product of a label embedding with the flattened features.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        channels: Sequence[int] = (64, 128),
        norm: str = "batch",
        conditional: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes, self.conditional = num_classes, conditional
        base = _base_size(image_size, len(channels))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"), _norm(norm, c_out), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers, nn.Flatten())
        n_features = channels[-1] * base * base
        self.head = nn.Linear(n_features, 1)
        self.embed = nn.Embedding(num_classes, n_features) if conditional else None
        dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One unnormalised score per image, shape ``(B,)``."""
        h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a conditional discriminator needs labels")
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out


class GAN(nn.Module):
    """The generator and discriminator trained against each other, injected as one net. It has no
    ``forward``: the GenerationModule calls each net in its own optimizer step."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        if generator.conditional != discriminator.conditional:
            raise ValueError("generator and discriminator must both be conditional or both unconditional")
        self.generator, self.discriminator = generator, discriminator
