"""The training precision that pays on the machine at hand."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPUs whose bf16 matmuls and convolutions beat fp32. Elsewhere
    autocast emulates bf16, and a step costs several times an fp32 step."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def fast_precision(accelerator: str, otherwise: str = "32-true") -> str:
    """``${fast_precision:${trainer.accelerator}}``: ``bf16-mixed`` on a GPU or on a CPU with
    fast bf16 (:func:`cpu_has_fast_bf16`), else ``otherwise``, so one experiment config trains
    fast on every machine it runs on."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if on_gpu or (accelerator == "cpu" and cpu_has_fast_bf16()) else otherwise
