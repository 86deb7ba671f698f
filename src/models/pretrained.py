"""Starting a new run from trained weights (``init=checkpoint``): the weights of another run's net,
of any task, loaded into this run's net, renamed by a prefix map, with a table of what loaded.

This is fine-tuning's first step, distinct from resuming (``ckpt_path``: the whole training state
of the same run) and from evaluating (eval.py): only the weights come over; the optimizer, the
schedule, the logger run and any head whose shape differs start fresh.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from src.utils.checkpoint import upgrade
from src.utils.errors import CheckpointError, ConfigError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

#: the LightningModule attribute every task module keeps its net under
NET_PREFIX = "net."


def under(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` or inside the module ``prefix`` (``a.b`` holds ``a.b.weight``, not ``a.bc``)."""
    prefix = prefix.rstrip(".")
    return not prefix or key == prefix or key.startswith(prefix + ".")


def rename(state: Mapping[str, torch.Tensor], prefix_map: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Keys under a source prefix of ``prefix_map`` moved under its target prefix (the longest
    matching source prefix wins; ``""`` matches every key); other keys unchanged."""
    rules = sorted(((s.rstrip("."), t.rstrip(".")) for s, t in prefix_map.items()), key=lambda r: -len(r[0]))
    out = {}
    for key, value in state.items():
        for source, target in rules:
            if under(key, source):
                rest = key[len(source):].lstrip(".")
                key = ".".join(p for p in (target, rest) if p)
                break
        out[key] = value
    return out


def _modules(keys: Iterable[str], limit: int = 6) -> str:
    """``features.0.weight, features.0.bias, features.1.weight`` -> ``features.0.*, features.1.*``."""
    modules = list(dict.fromkeys(k.rsplit(".", 1)[0] + ".*" if "." in k else k for k in keys))
    more = f" (+{len(modules) - limit} more)" if len(modules) > limit else ""
    return ", ".join(modules[:limit]) + more


@dataclass
class LoadReport:
    """What :func:`load_weights` did with each key, and the table it prints and saves."""

    source: str
    loaded: list[str] = field(default_factory=list)
    #: the net's keys the source does not have: they keep their fresh initialisation
    missing: list[str] = field(default_factory=list)
    #: the source's keys the net does not have: ignored
    unexpected: list[str] = field(default_factory=list)
    #: key -> (source shape, net shape): a replaced head, a resized vocabulary; fresh initialisation
    mismatched: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    #: the net's keys under ``init.exclude``: fresh initialisation although the source has them
    excluded: list[str] = field(default_factory=list)
    numel: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        mismatched = "; ".join(f"{k} {s} -> {n}" for k, (s, n) in list(self.mismatched.items())[:4])
        if len(self.mismatched) > 4:
            mismatched += f" (+{len(self.mismatched) - 4} more)"
        rows = [("loaded", self.loaded, _modules(self.loaded)),
                ("shape-mismatched (fresh init)", list(self.mismatched), mismatched),
                ("excluded by init.exclude (fresh init)", self.excluded, _modules(self.excluded)),
                ("missing from the source (fresh init)", self.missing, _modules(self.missing)),
                ("unexpected: in the source only (ignored)", self.unexpected, _modules(self.unexpected))]
        lines = [f"Initial weights from {self.source}", "", "| keys | tensors | values | names |", "| --- | --- | --- | --- |"]
        lines += [f"| {name} | {len(keys)} | {sum(self.numel.get(k, 0) for k in keys):,} | {names} |"
                  for name, keys, names in rows]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "loaded": self.loaded, "missing": self.missing, "unexpected": self.unexpected,
                "mismatched": {k: {"source": s, "net": n} for k, (s, n) in self.mismatched.items()},
                "excluded": self.excluded}


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


def published_weights(net: nn.Module) -> list[LoadReport]:
    """The reports of the submodules of ``net`` that loaded published weights when built
    (``load_report``: a Hugging Face model by name or folder)."""
    return [m.load_report for m in net.modules() if isinstance(getattr(m, "load_report", None), LoadReport)]


def hf_from_pretrained(auto_class: Any, name: str) -> tuple[Any, LoadReport]:
    """``auto_class.from_pretrained(name)`` and the same report as a checkpoint's: Hugging Face's
    loading info (missing, unexpected, shape-mismatched keys) as a :class:`LoadReport`."""
    model, info = auto_class.from_pretrained(name, output_loading_info=True)
    state = model.state_dict()
    mismatched = {key: (list(ckpt), list(own)) for key, ckpt, own in info.get("mismatched_keys", [])}
    skipped = set(info.get("missing_keys", [])) | set(mismatched)
    report = LoadReport(f"{name} ({auto_class.__name__}.from_pretrained)", loaded=[k for k in state if k not in skipped],
                        missing=list(info.get("missing_keys", [])), unexpected=list(info.get("unexpected_keys", [])),
                        mismatched=mismatched, numel={k: v.numel() for k, v in state.items()})
    return model, report


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                 exclude: Sequence[str] = ()) -> LoadReport:
    """Copy every tensor of ``state`` whose key and shape the net has (and that no ``exclude``
    prefix covers) into ``net``; report the rest. Loading nothing is an error: the keys do not
    line up, which a prefix map fixes."""
    own = net.state_dict()
    report = LoadReport(source)
    matched = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            report.numel[key] = value.numel()
        elif any(under(key, p) for p in exclude):
            report.excluded.append(key)
        elif value.shape != own[key].shape:
            report.mismatched[key] = (list(value.shape), list(own[key].shape))
        else:
            matched[key] = value
    report.missing = [k for k in own if k not in state]
    report.loaded = list(matched)
    report.numel.update({k: v.numel() for k, v in own.items()})
    if not matched:
        sample = lambda keys: ", ".join(list(keys)[:3]) or "none"  # noqa: E731
        raise ConfigError(f"init: no weight of {source} fits {type(net).__name__} (its keys: {sample(state)}; the net's: "
                          f"{sample(own)}); rename them with init.prefix_map={{<source prefix>: <net prefix>}}")
    net.load_state_dict(matched, strict=False)
    return report


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """The net weights of ``path`` and, for a Lightning checkpoint, the checkpoint itself: an
    archlab/Lightning ``.ckpt`` (its ``net.`` entries, the prefix dropped) or a file of
    ``torch.save(net.state_dict())``. Read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"init.path={path} does not exist; give a run's .ckpt (its checkpoints/ folder) or a "
                              "saved state_dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as e:
        raise CheckpointError(f"init.path={path} is not readable with weights_only=True ({describe(e, 160)}); give a "
                              ".ckpt or a torch.save(state_dict) file") from e
    if isinstance(obj, dict) and "state_dict" in obj:
        ckpt = upgrade(obj)  # to the current archlab format
        state = {k[len(NET_PREFIX):]: v for k, v in ckpt["state_dict"].items() if k.startswith(NET_PREFIX)}
        return state, ckpt
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
