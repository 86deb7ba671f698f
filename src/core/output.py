"""The rule classifier nets follow so that other parts can take them apart: the output layer is the
net's last ``nn.Linear`` in module order (``fc``, ``classifier.1``, ``heads.head``). SimCLR replaces
it by its projection head, FID reads its input as features, and ``model=torchvision`` swaps it for
one of the data's classes."""

from __future__ import annotations

from torch import nn

from src.core.errors import ConfigError


def output_layer(net: nn.Module, outputs: int | None = None) -> tuple[str, nn.Linear]:
    """The name and module of ``net``'s output layer; one line when it has none, or when it does not
    produce ``outputs`` values (a Linear defined after the output layer breaks the rule)."""
    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ConfigError(f"{type(net).__name__} has no nn.Linear output layer; archlab takes a classifier's last "
                          "nn.Linear as its output layer (src/core/output.py)")
    name, layer = layers[-1]
    if outputs is not None and layer.out_features != outputs:
        raise ConfigError(f"{type(net).__name__}'s last nn.Linear ({name}) has {layer.out_features} outputs, not the "
                          f"{outputs} classes: archlab takes a classifier's last nn.Linear as its output layer; "
                          "define the output layer last (src/core/output.py)")
    return name, layer
