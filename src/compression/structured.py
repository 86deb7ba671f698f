"""Channel (filter) pruning that shrinks the layers themselves, through torch-pruning's dependency
graph: removing a conv's output channel also removes the BatchNorm entries, the next layer's input
channels and every residual partner coupled to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from src.core.errors import ConfigError, describe
from src.core.prefix import under


def prune_channels(net: nn.Module, inputs: Sequence[torch.Tensor], ratio: float, ignore: Sequence[str] = ()) -> nn.Module:
    """Remove ``ratio`` of the channels of every prunable layer of ``net`` (in place), ranked by
    the L2 norm of their coupled weights. The layers that produce the net's output (their output
    size is the number of classes) and the modules named in ``ignore`` keep their size.
    (torch-pruning traces the net through autograd: no ``no_grad`` here.)"""
    import torch_pruning as tp

    with torch.no_grad():
        outputs = net(*inputs).shape[-1]
    ignored = [m for name, m in net.named_modules() if any(under(name, i) for i in ignore if i)]
    ignored += [m for m in net.modules() if isinstance(m, nn.Linear) and m.out_features == outputs]
    try:
        pruner = tp.pruner.MetaPruner(net, example_inputs=tuple(inputs), importance=tp.importance.GroupMagnitudeImportance(p=2),
                                      pruning_ratio=ratio, ignored_layers=ignored)
        pruner.step()
    except Exception as e:  # the dependency graph fails on layers it does not model, with any type
        raise ConfigError(f"structured pruning cannot rewire {type(net).__name__} ({describe(e, 160)}); "
                          "name the modules to keep with compression.ignore=[...]") from e
    return net


def load_resized(net: nn.Module, state_dict: Mapping[str, Any]) -> nn.Module:
    """Load a channel-pruned ``state_dict`` into an unpruned ``net`` of the same architecture:
    each parameter and buffer takes the saved shape, and the layers' size attributes follow."""
    for prefix, module in net.named_modules():
        for kind in ("_parameters", "_buffers"):
            for name, tensor in getattr(module, kind).items():
                saved = state_dict.get(f"{prefix}.{name}" if prefix else name)
                if tensor is not None and saved is not None and saved.shape != tensor.shape:
                    new = torch.empty_like(saved)
                    getattr(module, kind)[name] = nn.Parameter(new, tensor.requires_grad) if kind == "_parameters" else new
        if isinstance(module, nn.modules.conv._ConvNd):
            module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1] * module.groups
        elif isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.modules.batchnorm._NormBase):
            module.num_features = module.running_mean.shape[0] if module.running_mean is not None else module.weight.shape[0]
    net.load_state_dict(state_dict)
    return net
