"""SAGAN: self-attention block, spectral-normed nets of every size, the hinge loss, and a run
through train.py whose checkpoint reloads (weights_only) with its EMA generator's parametrizations."""

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from src.models.generation import GenerationModule, refresh_parametrizations
from src.models.nets.attention import SelfAttention2d
from src.models.nets.gan import GAN, DCGANDiscriminator
from src.models.nets.sagan import SAGANDiscriminator, SAGANGenerator
from train import train

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


@pytest.mark.parametrize(("shape", "channels"), [((1, 28, 28), (32, 16)), ((3, 32, 32), (32, 16, 8)),
                                                 ((3, 64, 64), (32, 16, 8, 8))])
@pytest.mark.parametrize("conditional", [False, True])
def test_net_shapes(shape: tuple[int, int, int], channels: tuple[int, ...], conditional: bool) -> None:
    c, size, _ = shape
    g = SAGANGenerator(16, c, size, 10, channels=channels, conditional=conditional)
    d = SAGANDiscriminator(c, size, 10, channels=channels[::-1], conditional=conditional)
    labels = torch.arange(3) % 10 if conditional else None
    images = g(torch.randn(3, 16), labels)
    assert images.shape == (3, *shape) and images.abs().max() <= 1
    assert d(images, labels).shape == (3,)
    assert (g.latent_dim, g.conditional, d.conditional) == (16, conditional, conditional)


def test_attention_stage_must_exist() -> None:
    with pytest.raises(ValueError, match="attention_stage=2"):
        SAGANGenerator(16, 1, 28, 10, channels=(16, 8), attention_stage=2)
    d = SAGANDiscriminator(1, 32, 10, channels=(8, 16, 32), attention_stage=-1)  # negative: from the end
    assert isinstance(d.features[-2], SelfAttention2d)


@pytest.mark.parametrize("conditional", [False, True])
def test_spectral_norm_on_every_layer_including_attention(conditional: bool) -> None:
    g = SAGANGenerator(16, 1, 28, 10, channels=(16, 8), conditional=conditional)
    d = SAGANDiscriminator(1, 28, 10, channels=(8, 16), conditional=conditional)
    for net in (g, d):
        (attention,) = [m for m in net.modules() if isinstance(m, SelfAttention2d)]
        assert all(parametrize.is_parametrized(p, "weight") for p in (attention.query, attention.key, attention.value,
                                                                      attention.out))
        layers = [m for m in net.modules() if isinstance(m, LAYERS)]
        assert len(layers) >= 6 and all(parametrize.is_parametrized(m, "weight") for m in layers)
    assert d.embed is None or parametrize.is_parametrized(d.embed, "weight")  # the projection too
    # the attention sits at the 14x14 resolution of both nets (G: last hidden stage, D: first)
    seen = []
    hook = lambda m, inputs, out: seen.append(tuple(out.shape[-2:]))  # noqa: E731
    for net in (g, d):
        next(m for m in net.modules() if isinstance(m, SelfAttention2d)).register_forward_hook(hook)
    labels = torch.zeros(2, dtype=torch.long) if conditional else None
    d(g(torch.randn(2, 16), labels), labels)
    assert seen == [(14, 14), (14, 14)]
    # spectral norm: each used weight has largest singular value ~1 after a few power iterations
    lin = d.head
    for _ in range(30):
        d(torch.randn(2, 1, 28, 28), labels)
    assert torch.linalg.matrix_norm(lin.weight.detach(), ord=2) == pytest.approx(1.0, rel=1e-2)


def test_dcgan_discriminator_spectral_norm_option() -> None:
    assert not any(parametrize.is_parametrized(m) for m in DCGANDiscriminator(1, 28, 10).modules())
    d = DCGANDiscriminator(1, 28, 10, norm="none", spectral_norm=True, conditional=True)
    assert all(parametrize.is_parametrized(m, "weight") for m in d.modules() if isinstance(m, (*LAYERS, nn.Embedding)))


def test_self_attention_is_sagans() -> None:
    """Zhang et al. 2019, eqs. 1-3: beta = softmax_i(f(x_i)^T g(x_j)) (unscaled), o_j = v(sum_i
    beta_ji h(x_i)), y = x + gamma * o; f, g, h are 1x1 convs to C/8 channels, v back to C."""
    block = SelfAttention2d(32)
    assert [m.out_channels for m in (block.query, block.key, block.value, block.out)] == [4, 4, 4, 32]
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 32, 5, 6)
    def conv(layer: nn.Conv2d, t: torch.Tensor) -> torch.Tensor:  # a 1x1 conv over (B, C, N)
        return torch.einsum("oc,bcn->bon", layer.weight[:, :, 0, 0], t) + layer.bias[:, None]

    tokens = x.flatten(2)
    f, g, h = conv(block.query, tokens), conv(block.key, tokens), conv(block.value, tokens)
    beta = torch.softmax(torch.einsum("bcj,bci->bji", f, g), dim=-1)  # query j over keys i
    o = conv(block.out, torch.einsum("bji,bci->bcj", beta, h))
    assert torch.allclose(block(x), x + 0.7 * o.reshape(x.shape), atol=1e-5)
    with pytest.raises(ValueError, match="num_heads=3"):
        SelfAttention2d(32, num_heads=3)


def test_self_attention_starts_as_identity_and_learns_gamma() -> None:
    block = SelfAttention2d(16, num_heads=2)
    x = torch.randn(2, 16, 5, 6)
    assert block.gamma.item() == 0 and torch.equal(block(x), x)
    block(x).square().sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad.abs() > 0  # gamma learns first
    with torch.no_grad():
        block.gamma.fill_(1.0)
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.allclose(block(channels_last), block(x), atol=1e-6) and not torch.equal(block(x), x)


class ScoreIsMean(nn.Module):
    """A stand-in discriminator: each image's score is its mean pixel."""

    conditional = False

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return x.flatten(1).mean(1)


def tiny_module(loss: str) -> GenerationModule:
    net = GAN(SAGANGenerator(8, 1, 8, 10, channels=(8, 4)), SAGANDiscriminator(1, 8, 10, channels=(4, 8)))
    return GenerationModule(net, num_classes=10, image_shape=[1, 8, 8], latent_dim=8, loss=loss,
                            metrics={"feature": "pixels"}, num_grid=4)


def test_hinge_loss_on_known_scores() -> None:
    module = tiny_module("hinge")
    module.net.discriminator = ScoreIsMean()
    scores = lambda *v: torch.tensor(v)[:, None, None, None].expand(-1, 1, 8, 8)  # noqa: E731
    out = module._discriminator_loss(scores(2.0, 0.5), scores(-2.0, 0.0), None)
    # D: mean(relu(1 - [2, 0.5])) + mean(relu(1 + [-2, 0])) = 0.25 + 0.5
    assert out["d_loss"].item() == pytest.approx(0.75)
    assert (out["d_real"].item(), out["d_fake"].item()) == pytest.approx((1.25, -1.0))
    assert module._generator_loss(scores(-2.0, 0.0), None).item() == pytest.approx(1.0)  # G: -mean(D(G(z)))
    with pytest.raises(Exception, match="hinge"):
        tiny_module("hinges")


def test_ema_refresh_finds_the_spectral_norm_of_the_averaged_weight() -> None:
    """AveragedModel averages the power-iteration vectors too; refresh_parametrizations makes them
    singular vectors of the averaged weight again, so the EMA weight is divided by its own norm."""
    lin = nn.utils.parametrizations.spectral_norm(nn.Linear(12, 7)).eval()
    sn = lin.parametrizations.weight[0]
    with torch.no_grad():
        sn._u.mul_(0.5)
        sn._v.copy_(torch.randn(12))  # as an average of unit vectors would be: not unit, not singular
    for _ in range(50):
        refresh_parametrizations(lin)
    assert not lin.parametrizations.weight.training
    assert torch.linalg.matrix_norm(lin.weight.detach(), ord=2) == pytest.approx(1.0, rel=1e-4)


def test_fit_checkpoint_reloads_weights_only_with_ema_samples(cfg_train, tmp_path: Path) -> None:
    cfg = cfg_train("model=sagan", "data=digits", "model.metrics.feature=pixels", "model.conditional=true",
                    "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", "test=false",
                    "model.net.generator.channels=[16,8]", "model.net.discriminator.channels=[8,16]")
    _, objects = train(cfg)
    module = objects["model"]
    g_ema = module.g_ema.module
    assert parametrize.is_parametrized(g_ema.net[0], "weight") and module.g_ema.n_averaged.item() == 3
    ema_original = g_ema.net[0].parametrizations.weight.original
    assert not torch.equal(ema_original, module.net.generator.net[0].parametrizations.weight.original)

    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # raises on any pickled object
    assert "g_ema.module.net.0.parametrizations.weight.0._u" in ckpt["state_dict"]
    net_cfg = ckpt["archlab"]["config"]["model"]["net"]
    net = GAN(SAGANGenerator(**{k: v for k, v in net_cfg["generator"].items() if k != "_target_"}),
              SAGANDiscriminator(**{k: v for k, v in net_cfg["discriminator"].items() if k != "_target_"}))
    reloaded = GenerationModule.load_from_checkpoint(ckpt_path, net=net, weights_only=True).eval()
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in reloaded.state_dict().items())
    z, labels = torch.randn(6, module.hparams.latent_dim), torch.arange(6)
    module.eval()
    with torch.no_grad():
        samples = module(z, labels)
        assert torch.equal(samples, reloaded(z, labels)) and samples.isfinite().all()
        # the EMA generator is a different net from the live one, and samples through its parametrizations
        assert not torch.allclose(samples, module.net.generator.eval()(z, labels))
