"""Compose every model x data pair and every experiment, resolved, to check a config refactor:

    python -m tests.compose_snapshot dump before.json        # on the old tree
    python -m tests.compose_snapshot dump after.json         # on the new one
    python -m tests.compose_snapshot compare before.json after.json

``compare`` maps each old spelling to its new one (``RENAMED_DATA``), moves the old keys to their new
places (``old_to_new``) and prints every value that still differs: an empty report means the
refactor changed nothing but the intended renames."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from src.core.checkpoints import RENAMED_DATA
from src.utils.config import compose, group_options

# values the split changed on purpose: SimCLR's batch of 256 moved from the data twin to its experiment
INTENDED = {"model=simclr data=fashion_mnist_contrastive": {"data.batch_size"},
            "model=simclr_resnet9 data=fashion_mnist_contrastive": {"data.batch_size"}}
# keys that vary with the machine or the clock, not with the config
VOLATILE = ("paths.output_dir", "paths.work_dir", "paths.root_dir", "run.name", "run.variant")


def resolved(node: Any, cfg: DictConfig, key: str = "") -> Any:
    """Every leaf resolved on its own: one that cannot resolve (a model needing data it is not
    given) is recorded as an error instead of failing the whole config."""
    if isinstance(node, DictConfig):
        return {k: resolved(node._get_node(k), cfg, f"{key}.{k}".lstrip(".")) for k in node.keys()}
    if isinstance(node, ListConfig):
        return [resolved(node._get_node(i), cfg, f"{key}.{i}") for i in range(len(node))]
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception as e:  # noqa: BLE001 - recorded, compared like a value
        return f"<unresolved: {type(e).__name__}>"
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def snapshot(overrides: list[str]) -> dict[str, Any] | str:
    try:
        cfg = compose("train", overrides, output_dir="/tmp/compose_snapshot")
    except Exception as e:  # noqa: BLE001
        return f"<compose error: {type(e).__name__}: {str(e).splitlines()[0]}>"
    out = resolved(cfg, cfg)
    for key in VOLATILE:
        parent, _, leaf = key.rpartition(".")
        out.get(parent, {}).pop(leaf, None)
    return out


def dump(path: str) -> None:
    runs = {f"model={m} data={d}": snapshot([f"model={m}", f"data={d}"])
            for m in group_options("model") for d in group_options("data")}
    runs.update({f"experiment={e}": snapshot([f"experiment={e}"]) for e in group_options("experiment")})
    Path(path).write_text(json.dumps(runs, indent=1, sort_keys=True, default=str))
    print(f"{len(runs)} configs -> {path}")


def old_to_new(cfg: dict[str, Any]) -> dict[str, Any]:
    """An old config in the new layout: the model's metadata moves to ``task``, and the data's one
    task becomes the task the run picked (the data now lists every task it serves)."""
    model, data = cfg.get("model", {}), cfg.get("data", {})
    task = cfg.setdefault("task", {})
    task["name"] = model.pop("task", None)
    for key in ("watch", "search_space", "ddp_find_unused_parameters"):
        if key in model:
            task[key] = model.pop(key)
    data.get("provides", {}).pop("task", None)
    group = cfg.get("run", {}).get("group", "")
    if "-" in group:  # W&B groups runs by the options chosen: the data's new name
        model_name, data_name = group.split("-", 1)
        cfg["run"]["group"] = f"{model_name}-{RENAMED_DATA.get(data_name, data_name)}"
    return cfg


def normalise_new(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg.get("data", {}).get("provides", {}).pop("tasks", None)
    return cfg


def differences(a: Any, b: Any, key: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k, "<absent>"), b.get(k, "<absent>"),
                                                                       f"{key}.{k}".lstrip("."))]
    return [] if a == b else [f"{key}: {a!r} -> {b!r}"]


def new_spelling(name: str) -> str:
    parts = dict(p.split("=", 1) for p in name.split())
    if "data" in parts:
        parts["data"] = RENAMED_DATA.get(parts["data"], parts["data"])
    return " ".join(f"{k}={v}" for k, v in parts.items())


def compare(before_path: str, after_path: str) -> int:
    before, after = json.loads(Path(before_path).read_text()), json.loads(Path(after_path).read_text())
    # an old pair is compared when it was a valid run: the model's task was among the data's
    valid = {n: c for n, c in before.items() if isinstance(c, dict)
             and (n.startswith("experiment=") or c["model"].get("task") == c["data"].get("provides", {}).get("task"))}
    changed = 0
    for name, old in sorted(valid.items()):
        new = after.get(new_spelling(name))
        if not isinstance(new, dict):
            print(f"{name} -> {new_spelling(name)}: {new or 'missing'}")
            changed += 1
            continue
        diff = differences(old_to_new(old), normalise_new(new))
        intended = [d for d in diff if d.split(":")[0] in INTENDED.get(name, ())]
        diff = [d for d in diff if d not in intended]
        if intended:
            print(f"{name} -> {new_spelling(name)} (intended):\n  " + "\n  ".join(intended))
        if diff:
            changed += 1
            print(f"{name} -> {new_spelling(name)}:\n  " + "\n  ".join(diff))
    print(f"{len(valid)} valid configs before, {changed} differ after the renames")
    return int(changed > 0)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    sys.exit(dump(*args) if command == "dump" else compare(*args))
