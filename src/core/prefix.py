"""The one test of "this key lies in that module": ``features.1`` holds ``features.1.weight``, not
``features.10.weight``. Every prefix option (``init.exclude``, ``model.lr_scales``, pruning's
``exclude``, ``init.prefix_map``) matches through it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

V = TypeVar("V")


def under(key: str, prefix: str) -> bool:
    """``key`` is ``prefix`` or inside the module ``prefix``; the empty prefix holds every key."""
    prefix = prefix.rstrip(".")
    return not prefix or key == prefix or key.startswith(prefix + ".")


def rename(state: Mapping[str, V], prefix_map: Mapping[str, str]) -> dict[str, V]:
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
