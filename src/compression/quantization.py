"""Post-training int8 quantization on CPU with PyTorch's own kernels (fbgemm/oneDNN, backend
``x86``): dynamic for Linear/LSTM/GRU layers, static (FX graph mode, calibrated on training
batches) for convolutional nets.

This goes through ``torch.ao.quantization``, which PyTorch has deprecated in favour of torchao
but still ships: it is the path whose int8 convolutions run fast in eager mode on CPU. torchao's
CPU int8 path (PT2E + X86InductorQuantizer) needs ``torch.compile`` to reach its kernels."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from src.core.errors import ConfigError, describe


@contextmanager
def _torch_ao() -> Iterator[None]:
    """torch.ao's deprecation notice and observer chatter, once per call, not per layer."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", message="Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel")
        yield


def dynamic_int8(net: nn.Module, layer_types: Sequence[str] = ("Linear", "LSTM", "GRU")) -> nn.Module:
    """A copy of ``net`` whose ``layer_types`` hold int8 weights; activations are quantized on
    the fly, per batch, so no calibration is needed."""
    types = {getattr(nn, t) for t in layer_types}
    if not any(isinstance(m, tuple(types)) for m in net.modules()):
        raise ConfigError(f"{type(net).__name__} has no {'/'.join(layer_types)} layer for dynamic int8; "
                          "use compression=int8_static for convolutional nets")
    with _torch_ao():
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(net).eval(), types, dtype=torch.qint8)


@torch.inference_mode()
def static_int8(net: nn.Module, calibration: Iterable[Sequence[Any]], submodule: str | None = None,
                backend: str = "x86") -> nn.Module:
    """A copy of ``net`` with ``submodule`` (or the whole net) statically quantized: FX traces it,
    fuses conv/BN/ReLU, observes the activation ranges over the ``calibration`` inputs (the net's
    positional inputs, batch by batch) and converts it to int8 kernels. Its outputs are
    dequantized, so the rest of the net runs in float as before."""
    net = copy.deepcopy(net).eval()
    name = submodule or ""
    target = net.get_submodule(name)
    batches = iter(calibration)
    first = next(batches)
    example: list[tuple[Any, ...]] = []
    hook = target.register_forward_pre_hook(lambda _, args: example.append(args))
    net(*first)
    hook.remove()
    with _torch_ao():
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = backend
        try:
            prepared = prepare_fx(target, get_default_qconfig_mapping(backend), example[0])
        except Exception as e:  # torch.fx raises many types for code it cannot trace
            raise ConfigError(f"static int8 cannot trace {type(target).__name__} ({describe(e, 160)}); quantize a "
                              "traceable part with compression.submodule=<name> or use compression=int8_dynamic") from e
        net = _replace(net, name, prepared)
        for inputs in (first, *batches):
            net(*inputs)
        return _replace(net, name, convert_fx(prepared))


def _replace(net: nn.Module, name: str, module: nn.Module) -> nn.Module:
    if not name:
        return module
    net.set_submodule(name, module)
    return net
