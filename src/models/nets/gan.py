"""DCGAN-style generator and discriminator (Radford et al. 2016), optionally class-conditional.

The generator upsamples a latent vector with stride-2 transposed convolutions, the
discriminator downsamples with stride-2 convolutions; one stage per entry of ``channels``, so
``image_size`` must be ``base * 2**len(channels)`` (28 = 7 * 4, 32 = 4 * 8, 64 = 4 * 16).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrizations

from src.models.nets.attention import SelfAttention2d

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


SPECTRAL_NORMED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def spectral_norm_all(module: nn.Module) -> nn.Module:
    """Wraps every conv, transposed conv, linear and embedding layer inside ``module`` in
    ``torch.nn.utils.parametrizations.spectral_norm``: each weight is used
    divided by its largest singular value (one power iteration per training forward), so every
    layer is 1-Lipschitz. Parametrizations live in the state_dict as
    ``<layer>.parametrizations.weight.{original,0._u,0._v}``: plain tensors, deep-copied by
    ``AveragedModel``. Call after initialising the weights (the init writes ``weight``)."""
    for m in list(module.modules()):
        if isinstance(m, SPECTRAL_NORMED):
            parametrizations.spectral_norm(m)
    return module


def _add_attention(stages: list[list[nn.Module]], channels: Sequence[int], attention_stage: int | None,
                   num_heads: int) -> None:
    """Appends a self-attention block to the stage ``attention_stage`` names (negative: from the
    end; None: none). Appending keeps the layer indices of a net without attention unchanged."""
    if attention_stage is None:
        return
    if not -len(channels) <= attention_stage < len(channels):
        raise ValueError(f"attention_stage={attention_stage} is not a stage of the {len(channels)} channels entries")
    stages[attention_stage].append(SelfAttention2d(channels[attention_stage], num_heads))


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
    concatenated to it. ``attention_stage`` (an index into ``channels``, negative from the end)
    adds a :class:`~src.models.nets.attention.SelfAttention2d` block after that hidden stage, and
    ``spectral_norm`` wraps every conv layer: the SAGAN generator (:mod:`src.models.nets.sagan`).
    The label embedding is an input, not a layer whose gain compounds: never spectral-normed.
    """

    def __init__(
        self,
        latent_dim: int,
        out_channels: int,
        image_size: int,
        num_classes: int,
        channels: Sequence[int] = (128, 64),
        conditional: bool = False,
        attention_stage: int | None = None,
        num_heads: int = 1,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.conditional = latent_dim, num_classes, conditional
        base = _base_size(image_size, len(channels))
        self.embed = nn.Embedding(num_classes, latent_dim) if conditional else None
        in_dim = latent_dim * (2 if conditional else 1)
        # A transposed conv with kernel `base` on a 1x1 input is a linear layer to (C, base, base).
        stages: list[list[nn.Module]] = [
            [nn.ConvTranspose2d(in_dim, channels[0], base, bias=False), nn.BatchNorm2d(channels[0]), nn.ReLU(True)],
        ]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            stages.append([nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)])
        _add_attention(stages, channels, attention_stage, num_heads)
        self.net = nn.Sequential(*(layer for stage in stages for layer in stage),
                                 nn.ConvTranspose2d(channels[-1], out_channels, 4, 2, 1), nn.Tanh())
        dcgan_init(self)
        if spectral_norm:
            spectral_norm_all(self.net)

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
    ``spectral_norm=True`` wraps every conv, linear and embedding layer in spectral norm (Miyato
    et al. 2018): D stays 1-Lipschitz per layer, which keeps its gradients useful to G.
    ``attention_stage`` adds self-attention after that stage (the SAGAN discriminator).
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
        spectral_norm: bool = False,
        attention_stage: int | None = None,
        num_heads: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes, self.conditional = num_classes, conditional
        base = _base_size(image_size, len(channels))
        stages: list[list[nn.Module]] = [[nn.Conv2d(in_channels, channels[0], 4, 2, 1), nn.LeakyReLU(0.2, True)]]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            stages.append([nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm == "none"), _norm(norm, c_out), nn.LeakyReLU(0.2, True)])
        _add_attention(stages, channels, attention_stage, num_heads)
        self.features = nn.Sequential(*(layer for stage in stages for layer in stage), nn.Flatten())
        n_features = channels[-1] * base * base
        self.head = nn.Linear(n_features, 1)
        self.embed = nn.Embedding(num_classes, n_features) if conditional else None
        dcgan_init(self)
        if spectral_norm:
            spectral_norm_all(self)

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
