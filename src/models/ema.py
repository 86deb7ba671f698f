"""Exponential moving average of weights, for ``torch.optim.swa_utils.AveragedModel``."""

from __future__ import annotations

from collections.abc import Callable

import torch


def ema_average(decay: float) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``AveragedModel`` averaging function: exponential moving average whose decay ramps up as
    ``(1 + n) / (10 + n)`` up to ``decay``, so short runs are not dominated by the initial
    weights. Integer buffers (BatchNorm's batch counter) are copied."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        d = ((1 + num_averaged) / (10 + num_averaged)).clamp(max=decay).to(averaged.dtype)
        return averaged.lerp(current, 1 - d)

    return average
