"""Architectures: output shapes, and clear errors for impossible shapes."""

import pytest
import torch

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
