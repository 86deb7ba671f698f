"""What the compression table reports for one net: file sizes, non-zero parameters, CPU latency."""

from __future__ import annotations

import gzip
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def size_mb(path: Path) -> tuple[float, float]:
    """Size of a file and of its gzip (level 9), in MB: zeros of a pruned net only shrink the latter."""
    data = path.read_bytes()
    return len(data) / 1e6, len(gzip.compress(data, compresslevel=9)) / 1e6


def nonzero_params(net: nn.Module) -> int:
    """Non-zero parameters: float ones, plus the int8 weights of quantized layers (which are state,
    not parameters; packed Linear/LSTM weights come as tuples). An ONNX net counts its own."""
    if hasattr(net, "nonzero_params"):
        return net.nonzero_params()
    total = sum(int(p.count_nonzero()) for p in net.parameters())
    for value in net.state_dict().values():
        for t in value if isinstance(value, (tuple, list)) else [value]:
            if isinstance(t, torch.Tensor) and t.is_quantized:
                total += int(t.int_repr().count_nonzero())
    return total


@torch.inference_mode()
def latency_ms(net: nn.Module, inputs: Sequence[Any], threads: int, repeats: int = 15, warmup: int = 3) -> float:
    """Median wall time of ``net(*inputs)`` in ms on ``threads`` CPU threads, after ``warmup`` calls."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    if hasattr(net, "set_threads"):  # onnxruntime keeps its own thread pool
        net.set_threads(threads)
    try:
        for _ in range(warmup):
            net(*inputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(*inputs)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3
    finally:
        torch.set_num_threads(previous)
