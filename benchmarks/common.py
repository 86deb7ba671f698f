"""Shared by the benchmarks: the closing JSON line (figures + git sha + versions), config
composition, and a table printer."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def versions() -> dict[str, str]:
    import lightning
    import torch
    import torchmetrics
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__}


def git_sha() -> str:
    """The commit the figures come from, ``-dirty`` when tracked files had changes."""
    from src.utils.tracking import git_state

    state = git_state(ROOT)
    return state["git/sha"] + ("-dirty" if state["git/dirty"] else "") if state else "unknown"


def machine() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = list(dict.fromkeys(c for r in rows for c in r))  # a row may lack a column (a failed variant)
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(fmt(r.get(c, "")).ljust(widths[c]) for c in cols))


def fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


#: per-round ratios that differ by more than this share of their median are flagged
SPREAD_WARNING = 0.15


def spread(name: str, ratios: list[float]) -> float:
    """(max - min) / median of the per-round ratios of ``name``, with a warning line when it
    exceeds :data:`SPREAD_WARNING`: the machine was not steady and the median is less certain."""
    import statistics

    value = (max(ratios) - min(ratios)) / statistics.median(ratios)
    if value > SPREAD_WARNING:
        print(f"WARNING: the {name} ratios spread {value:.0%} of their median (> {SPREAD_WARNING:.0%}): the machine "
              "was not steady; rerun with nothing else running, or with more --repeats", flush=True)
    return value


def emit(figures: dict[str, Any]) -> None:
    """The last output line: one JSON object."""
    print(json.dumps({**figures, "git_sha": git_sha(), "versions": versions(), "machine": machine()}), flush=True)


def train_run(overrides: list[str], name: str, log_dir: Path | None = None,
              script: str = "train.py") -> tuple[float, list[dict[str, str]]]:
    """Run ``python train.py <overrides>`` (or eval.py) as a user would (no progress bar, CSV
    logger) and return its wall time (process start to exit) and the rows of its metrics.csv."""
    import csv
    import time

    log_dir = log_dir or ROOT / "logs" / "benchmarks" / f"{name}_{int(time.time())}"
    t = time.perf_counter()
    quiet = ["extras.print_config=false", "trainer.enable_progress_bar=false"]
    quiet += ["callbacks.rich_progress_bar=null"] if script == "train.py" else []
    proc = subprocess.run([sys.executable, str(ROOT / script), *overrides, f"paths.log_dir={log_dir}", "logger=csv", *quiet],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    (metrics,) = log_dir.rglob("metrics.csv")
    return seconds, list(csv.DictReader(metrics.open()))


def last_values(rows: list[dict[str, str]]) -> dict[str, str]:
    """The last logged value of every metric in metrics.csv rows."""
    last: dict[str, str] = {}
    for row in rows:
        last.update({k: v for k, v in row.items() if v})
    return last


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last logged value of ``key`` in metrics.csv rows."""
    return next(float(r[key]) for r in reversed(rows) if r.get(key))


def data_dir(required: str = "MNIST/raw") -> str:
    """DATA_DIR (a writable folder: torchvision extracts next to its archives), checked to hold
    ``required``."""
    path = os.environ.get("DATA_DIR")
    if not path or not Path(path, required).exists():
        sys.exit(f"{required} not found under DATA_DIR={path or '(unset)'}; set DATA_DIR to a writable folder "
                 "with the datasets")
    return path


# -- steady-state step time: train.py's side (a callback) and a bare loop's side ------------------
def _perf_counter() -> float:
    import time

    return time.perf_counter()


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


class WindowTimer:
    """Times training steps ``warmup`` .. ``warmup + steps - 1`` (0-based, counted over the whole
    run), synchronising the device only at the two ends of the window: ``start(i, device)``
    before step ``i``, ``end(i, device)`` after it. ``seconds_per_step`` is None until the window
    closes."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.t0, self.seconds_per_step = 0.0, None

    def start(self, i: int, device: Any) -> None:
        if i == self.warmup:
            _sync(device)
            self.t0 = _perf_counter()

    def end(self, i: int, device: Any) -> bool:
        """True once the window is closed (the caller may stop)."""
        if i == self.warmup + self.steps - 1:
            _sync(device)
            self.seconds_per_step = (_perf_counter() - self.t0) / self.steps
        return i >= self.warmup + self.steps - 1


def step_timer_callback(warmup: int, steps: int, out: str = "step_time.json") -> Any:
    """A Lightning callback around :class:`WindowTimer` that writes ``{seconds_per_step, warmup,
    steps}`` to ``<run dir>/<out>`` when the window closes. Use from train.py with
    ``+callbacks.step_timer={_target_: benchmarks.common.step_timer_callback, warmup: W, steps: N}``."""
    from lightning import Callback

    class StepTimer(Callback):
        def __init__(self) -> None:
            self.timer, self.i = WindowTimer(warmup, steps), 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: ANN001
            self.timer.start(self.i, pl_module.device)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self.timer.end(self.i, pl_module.device)
            if self.i == warmup + steps - 1 and trainer.is_global_zero:
                Path(trainer.default_root_dir, out).write_text(json.dumps(
                    {"seconds_per_step": self.timer.seconds_per_step, "warmup": warmup, "steps": steps}))
            self.i += 1

    return StepTimer()


def run_entry(script: str, overrides: list[str], log_dir: Path, env: dict[str, str] | None = None,
              timeout: float | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """``python <script> <overrides>`` as :func:`train_run` runs it (CSV logger, no progress bar),
    without exiting on failure: (wall seconds, the finished process)."""
    quiet = ["extras.print_config=false", "trainer.enable_progress_bar=false"]
    quiet += ["callbacks.rich_progress_bar=null"] if script == "train.py" else []
    t = _perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / script), *overrides, f"paths.log_dir={log_dir}", "logger=csv", *quiet],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout)
    return _perf_counter() - t, proc


def metrics_rows(log_dir: Path) -> list[dict[str, str]]:
    """The rows of every metrics.csv under ``log_dir``, in path order."""
    import csv

    return [row for path in sorted(log_dir.rglob("metrics.csv")) for row in csv.DictReader(path.open())]


def bare_optimizer(factory_cfg: Any, params: Any, scheduler_cfg: Any = None, total_steps: int = 1) -> tuple[Any, Any]:
    """The model config's ``_partial_`` optimizer (and scheduler, given the run's length as
    archlab's modules give it: ``length_arguments``) over ``params``, for a bare PyTorch loop of
    ``total_steps`` steps, the scheduler stepped every step."""
    from hydra.utils import instantiate

    from src.models.base import length_arguments

    opt = instantiate(factory_cfg)(params=params)
    if scheduler_cfg is None:
        return opt, None
    factory = instantiate(scheduler_cfg)
    return opt, factory(optimizer=opt, **length_arguments(factory, "step", lambda: total_steps, None))


def bare_components(overrides: list[str], run_dir: Path) -> tuple[Any, Any, Any]:
    """(composed config, set-up datamodule, net) of ``python train.py <overrides>``, built as
    overhead.py's bare loop builds them: the same net, data pipeline and seed, no Lightning loop."""
    import torch
    from hydra.utils import instantiate

    from src.utils.config import compose
    from src.utils.instantiate import instantiate_component

    cfg = compose("train", overrides, run_dir)
    torch.manual_seed(cfg.seed)
    dm = instantiate_component(cfg.data)
    # what a DataModule asks of its trainer: one process, and the training device (where
    # data.loader=batches keeps the images, as under train.py)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, local_rank=0, strategy=SimpleNamespace(root_device=device))
    dm.setup("fit")
    getattr(dm, "tokenizer", None)  # a summarization datamodule builds its tokenizer on first use
    return cfg, dm, instantiate(cfg.model.net)
