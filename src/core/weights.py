"""Loading weights into a net, key by key, with a report of what loaded: the one table for a
checkpoint (``init=checkpoint``) and for a Hugging Face model by name or folder."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from src.core.errors import ConfigError
from src.core.prefix import under


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
