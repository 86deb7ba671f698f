"""Self-attention GAN (Zhang et al. 2019), DCGAN-shaped: the generator and discriminator of
:mod:`src.models.nets.gan` with a :class:`~src.models.nets.attention.SelfAttention2d` block at a
middle resolution of each, and spectral normalisation (Miyato et al. 2018) on every convolution
and linear layer of both nets, the attention projections included. SAGAN found that spectral
norm in G as well as D, with the hinge loss and two time-scale learning rates (configs/model/
sagan.yaml), keeps the adversarial game stable; the attention lets distant parts of an image
agree. ``image_size`` must be ``base * 2**len(channels)`` as for DCGAN (28 = 7 * 4, 32 = 4 * 8,
64 = 4 * 16). ``spectral_norm=False`` (either net) is the ablation, not SAGAN.
"""

from __future__ import annotations

from collections.abc import Sequence

from src.models.nets.gan import DCGANDiscriminator, DCGANGenerator


class SAGANGenerator(DCGANGenerator):
    """DCGAN's generator (``z (+ label embedding) -> ConvT(base) -> [ConvT 4x4 s2 -> BN -> ReLU]*
    -> ConvT 4x4 s2 -> tanh``) with self-attention after the hidden stage ``attention_stage``
    (default: the last, the finest hidden resolution: 14x14 for 28x28 images) and spectral
    norm on every layer. BatchNorm stays, as in SAGAN's generator."""

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, num_classes: int,
                 channels: Sequence[int] = (128, 64), conditional: bool = False, attention_stage: int = -1,
                 num_heads: int = 1, spectral_norm: bool = True) -> None:
        super().__init__(latent_dim, out_channels, image_size, num_classes, channels, conditional, attention_stage,
                         num_heads, spectral_norm)


class SAGANDiscriminator(DCGANDiscriminator):
    """DCGAN's discriminator with self-attention after the stage ``attention_stage`` (default: the
    first, the finest downsampled resolution: 14x14 for 28x28 images) and spectral norm on every
    layer. ``norm`` is ``"none"`` in SAGAN: spectral norm bounds D's Lipschitz constant without
    normalising activations, the role WGAN-GP's penalty plays. Conditional: a projection
    discriminator whose label embedding is spectral-normed too."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, channels: Sequence[int] = (64, 128),
                 norm: str = "none", conditional: bool = False, attention_stage: int = 0, num_heads: int = 1,
                 spectral_norm: bool = True) -> None:
        super().__init__(in_channels, image_size, num_classes, channels, norm, conditional, spectral_norm,
                         attention_stage, num_heads)
