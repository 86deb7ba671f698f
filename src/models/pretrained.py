"""Starting a new run from trained weights (``init=checkpoint``): the weights of another run's net,
of any task, loaded into this run's net, renamed by a prefix map, with a table of what loaded.

This is fine-tuning's first step, distinct from resuming (``ckpt_path``: the whole training state
of the same run) and from evaluating (eval.py): only the weights come over; the optimizer, the
schedule, the logger run and any head whose shape differs start fresh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from src.core import checkpoints
from src.core.errors import CheckpointError
from src.core.prefix import rename
from src.core.weights import LoadReport, load_weights
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


@rank_zero_only
def save_reports(reports: Sequence[LoadReport], folder: str | Path) -> None:
    """Print each table and write them (``init_weights.md``) and every key (``init_weights.json``)
    into the run folder."""
    tables = [report.table() for report in reports]
    for table in tables:
        log.info(table)
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, "init_weights.md").write_text("\n\n".join(tables) + "\n")
    Path(folder, "init_weights.json").write_text(json.dumps([r.as_dict() for r in reports], indent=1) + "\n")


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The net weights of ``path`` and, for a Lightning checkpoint, the checkpoint itself: an
    archlab/Lightning ``.ckpt`` (its ``net.`` entries, the prefix dropped) or a file of
    ``torch.save(net.state_dict())``. Read with ``weights_only=True``."""
    obj = checkpoints.read(path, "init.path")
    if checkpoints.is_checkpoint(obj):
        ckpt = checkpoints.upgrade(obj)
        return checkpoints.net_state(ckpt), ckpt
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj), None
    raise CheckpointError(f"init.path={path} holds neither a Lightning checkpoint nor a state_dict of tensors")


def init_from_checkpoint(net: nn.Module, path: str, prefix_map: Mapping[str, str] | None = None,
                         exclude: Sequence[str] = ()) -> tuple[LoadReport, dict[str, Any] | None]:
    """``init=checkpoint``: the weights of ``path`` into ``net``; returns the report and the
    checkpoint (what the data may need from it: a summarizer's tokenizer)."""
    state, ckpt = read_state_dict(path)
    state = rename(state, prefix_map or {})
    mapping = f" (prefix_map {dict(prefix_map)})" if prefix_map else ""
    return load_weights(net, state, f"{path}{mapping}", exclude), ckpt
