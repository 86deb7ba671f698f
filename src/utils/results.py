"""Read finished (or killed) runs from their own files and compare them: the overrides that differ,
the watched metric's best, the test metrics, mean ± std over seeds, and the watched metric's
curves. No W&B, no network: ``.hydra/`` for the config, ``summary.json`` when the run finished,
``csv/version_*/metrics.csv`` (or TensorBoard event files) for the curves."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import yaml
from omegaconf import DictConfig, OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from src.core.errors import UserError
from src.utils.run_names import trained_overrides

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


@dataclass
class Run:
    path: Path
    config: DictConfig
    choices: dict[str, Any]
    overrides: dict[str, str]
    summary: dict[str, Any]
    curves: pd.DataFrame = field(repr=False)

    @property
    def watched(self) -> tuple[str | None, str]:
        # runs from before the task/data/model split kept it in the model config
        watch = self.config.get("task", {}).get("watch") or self.config.get("model", {}).get("watch", {})
        return watch.get("metric"), watch.get("mode", "max")

    def value(self, key: str) -> Any:
        """A config group's choice or a config value, as this run had it."""
        if key in self.choices:
            return self.choices[key]
        return OmegaConf.select(self.config, key, default=None, throw_on_resolution_failure=False)


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders (they hold ``.hydra/``) among ``paths`` and below them, in order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist; pass run folders or a sweep folder (logs/train/multiruns/<date>)")
        found += [path] if (path / ".hydra").is_dir() else sorted(
            (p.parent.parent for p in path.rglob(".hydra/config.yaml")), key=_natural)
    if not found:
        raise UserError(f"no runs under {', '.join(map(str, paths))}: a run folder holds .hydra/ (logs/train/runs/<date>)")
    return list(dict.fromkeys(found))


def _natural(path: Path) -> list[tuple[int, str]]:
    """Sort key: job 2 before job 10 (folders named by numbers in their order, after the others)."""
    return [(int(part), "") if part.isdigit() else (-1, part) for part in path.parts]


def read_curves(run: Path) -> pd.DataFrame:
    """Every logged value by step (and epoch). A resumed run's CSV versions are joined: rows of an
    earlier version from the step where the next one starts are replaced by the next one's."""
    versions = sorted((run / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    frames = [pd.read_csv(p) for p in versions if p.stat().st_size]
    if not frames:
        return _tensorboard_curves(run)
    joined = frames[-1]
    for earlier in reversed(frames[:-1]):
        start = joined["step"].min()
        joined = pd.concat([earlier[earlier["step"] < start], joined], ignore_index=True)
    return joined


def _tensorboard_curves(run: Path) -> pd.DataFrame:
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for events in sorted({p.parent for p in (run / "tensorboard").rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            for event in accumulator.Scalars(tag):
                rows.setdefault((str(events), event.step), {"step": event.step})[tag] = event.value
    return pd.DataFrame(list(rows.values()))


def read_run(path: Path) -> Run:
    hydra_dir = path / ".hydra"
    config = OmegaConf.create(yaml.safe_load((hydra_dir / "config.yaml").read_text()) or {})
    hydra_cfg = yaml.safe_load((hydra_dir / "hydra.yaml").read_text()) if (hydra_dir / "hydra.yaml").exists() else {}
    choices = {k: v for k, v in hydra_cfg.get("hydra", {}).get("runtime", {}).get("choices", {}).items()
               if v is not None and not k.startswith("hydra")}
    overrides = dict(trained_overrides(yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []))
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    return Run(path, config, choices, overrides, summary, read_curves(path))


def _best(run: Run) -> dict[str, Any]:
    """The watched metric's best value and epoch: the summary's (the tested checkpoint's) for a
    finished run, else the best logged so far."""
    metric, mode = run.watched
    if metric is None:
        return {}
    if f"best/{metric}" in run.summary:
        return {f"best {metric}": run.summary[f"best/{metric}"], "best epoch": run.summary.get("best/epoch")}
    if metric not in run.curves:
        return {}
    logged = run.curves.dropna(subset=[metric])
    if logged.empty:
        return {}
    row = logged.loc[logged[metric].idxmax() if mode == "max" else logged[metric].idxmin()]
    return {f"best {metric}": row[metric], "best epoch": row.get("epoch")}


def compare(runs: Sequence[Run]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: the settings that differ between runs (all of model, data, seed when
    nothing differs), the watched metric's best, the test metrics, size and time. Returns the
    table and the names of the settings that differ."""
    keys = ["model", "data", "seed", *dict.fromkeys(k for run in runs for k in run.overrides if k not in ("model", "data", "seed"))]
    values = {key: [run.value(key) for run in runs] for key in keys}
    varying = [key for key in keys if len({json.dumps(v, sort_keys=True, default=str) for v in values[key]}) > 1]
    rows = []
    for i, run in enumerate(runs):
        row: dict[str, Any] = {"run": run.summary.get("run/name", run.path.name)}
        row.update({key: values[key][i] for key in varying or ["model", "data", "seed"]})
        row.update(_best(run))
        tests = {k: v for k, v in run.summary.items() if k.startswith("test/")}
        if not tests and not run.curves.empty:
            tests = {k: run.curves[k].dropna().iloc[-1] for k in run.curves if k.startswith("test/") and run.curves[k].notna().any()}
        row.update(tests)
        row["params"] = run.summary.get("model/params/total")
        row["train s"] = run.summary.get("time/train_s")
        row["status"] = "finished" if run.summary else "unfinished"
        row["path"] = str(run.path)
        rows.append(row)
    return pd.DataFrame(rows), varying


#: settings whose runs are repeats of one configuration: seeds, and the folds of k-fold cross-validation
REPEATS = ("seed", "data.fold")


def over_seeds(table: pd.DataFrame, varying: Sequence[str]) -> pd.DataFrame | None:
    """Mean ± std (and n) of every metric over the seeds (and the cross-validation folds,
    ``data.fold``) of each configuration; None unless seeds or folds vary and some configuration
    has more than one run."""
    if not set(REPEATS) & set(varying):
        return None
    by = [s for s in varying if s not in REPEATS]
    metrics = [c for c in table.columns if c not in (*varying, "run", "status", "path") and pd.api.types.is_numeric_dtype(table[c])]
    if not by:
        table = table.assign(configuration="all")
        by = ["configuration"]
    grouped = table.groupby([table[b].astype(str) for b in by], sort=False)
    if grouped.size().max() < 2:
        return None
    rows = []
    for key, group in grouped:
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(group)
        for m in metrics:
            col = group[m].dropna()
            mean = f"{col.mean():.0f}" if col.abs().max() >= 1000 else f"{col.mean():.4g}"
            row[m] = "" if col.empty else f"{mean} ± {col.std():.2g}" if len(col) > 1 else mean
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(runs: Sequence[Run], labels: Sequence[str], out: Path) -> None:
    """The watched metric by epoch, one line per run, one panel per watched metric."""
    metrics = list(dict.fromkeys(run.watched[0] for run in runs if run.watched[0]))
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(6 * max(len(metrics), 1), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for run, label in zip(runs, labels):
            if run.watched[0] != metric or metric not in run.curves:
                continue
            points = run.curves.dropna(subset=[metric])
            x = "epoch" if "epoch" in points else "step"
            ax.plot(points[x], points[metric], marker="o", markersize=3, label=label)
            ax.set_xlabel(x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as a Markdown table: every key a column, floats to 4 significant digits, a missing,
    None or NaN value an empty cell (compare.py's tables, compress.py's before/after)."""
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return ""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_comparison(paths: Sequence[str | Path], out: Path) -> str:
    """Compare the runs under ``paths``; write ``comparison.md``, ``comparison.csv`` (one row per
    run), ``comparison_over_seeds.csv`` (when seeds or cross-validation folds vary) and ``curves.png`` into ``out``.
    Returns the markdown."""
    runs = [read_run(p) for p in find_runs(paths)]
    table, varying = compare(runs)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "comparison.csv", index=False)
    text = f"# {len(runs)} runs\n\n{markdown(table.drop(columns=['path']).to_dict('records'))}\n"
    seeds = over_seeds(table, varying)
    if seeds is not None:
        seeds.to_csv(out / "comparison_over_seeds.csv", index=False)
        over = " and ".join({"seed": "seeds", "data.fold": "folds"}[k] for k in REPEATS if k in varying)
        text += f"\n## Mean ± std over {over}\n\n{markdown(seeds.to_dict('records'))}\n"
    plot_curves(runs, list(table["run"]), out / "curves.png")
    (out / "comparison.md").write_text(text)
    return text
