"""Collecting the per-example outputs that each DDP process made for its share of the examples."""

from __future__ import annotations

from typing import Any

import torch
from lightning import Trainer


def gather_rows(rows: list[Any], trainer: Trainer, key: str | None = None) -> list[Any]:
    """Every process's rows, on every process, in the order one process would have made them:
    process r of W evaluates examples r, r + W, ... (:func:`src.data.common.loader`), so
    interleaving the processes' lists restores the dataset's order. Rows that are not one per
    example (a subset, or several per loader item) are sorted by ``key`` instead, in one process
    as in several."""
    if trainer.world_size > 1:
        gathered: list[list[Any]] = [[] for _ in range(trainer.world_size)]
        torch.distributed.all_gather_object(gathered, rows)
        rows = [part[i] for i in range(max(map(len, gathered))) for part in gathered if i < len(part)]
    return sorted(rows, key=lambda row: row[key]) if key else rows
