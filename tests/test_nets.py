"""Architectures: output shapes, and clear errors for impossible shapes."""

import pytest
import torch

from src.core.errors import ConfigError
from src.core.output import output_layer
from src.models.nets.cnn import SimpleCNN
from src.models.nets.dense import SimpleDenseNet
from src.models.nets.resnet import resnet9, resnet18


@pytest.mark.parametrize(
    ("net", "shape"),
    [
        (SimpleCNN(1, 10, image_size=8), (1, 8, 8)),
        (SimpleCNN(3, 10, image_size=32, channels=(16, 32, 64), convs_per_stage=2), (3, 32, 32)),
        (SimpleDenseNet(784, 10), (1, 28, 28)),
        (resnet18(3, 10, width=8), (3, 32, 32)),
        (resnet9(1, 10, width=8), (1, 28, 28)),
    ],
)
def test_output_shape(net: torch.nn.Module, shape: tuple[int, ...]) -> None:
    net.eval()
    assert net(torch.randn(4, *shape)).shape == (4, 10)


def test_cnn_rejects_too_many_pools() -> None:
    with pytest.raises(ValueError, match="too small"):
        SimpleCNN(1, 10, image_size=8, channels=(8, 8, 8, 8))


@pytest.mark.parametrize("net", [SimpleCNN(1, 10, image_size=8), SimpleDenseNet(64, 10), resnet9(1, 10, width=8)])
def test_every_classifier_ends_with_its_output_layer(net: torch.nn.Module) -> None:
    """The rule SimCLR, FID features and model=torchvision rely on: the last nn.Linear makes the outputs."""
    name, layer = output_layer(net, outputs=10)
    assert layer is net.get_submodule(name)


def test_a_net_that_breaks_the_output_layer_rule_is_one_line() -> None:
    with pytest.raises(ConfigError, match="has no nn.Linear output layer"):
        output_layer(torch.nn.Conv2d(1, 2, 3))
    head_first = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.Linear(10, 3))  # an extra layer after the output
    with pytest.raises(ConfigError, match=r"last nn.Linear \(1\) has 3 outputs, not the 10 classes"):
        output_layer(head_first, outputs=10)
