"""The GPU suite: one command, <= 8 minutes on one NVIDIA H200, one table, one JSON line.

Sections (each through the entry points as users run them: ``python train.py ...`` / ``eval.py``,
``trainer=gpu`` = bf16-mixed, CSV logger, no progress bar):

1. MNIST time to 99.3 % test accuracy (``experiment=mnist_cnn``): process wall time and test acc.
   Its checkpoint is the classifier of section 3's FID features.
2. easy-VQA time to 99.5 % (``experiment=easy_vqa_cross_attention``): the same.
3. DCGAN on MNIST, the experiment's 2 epochs capped at 3 minutes (``experiment=mnist_dcgan
   trainer.max_time=00:00:03:00``): test/fid
   divided by test/fid_floor (real-vs-real, same features), as gan_quality.py reads them.
4. CNN/DailyMail (pg_tokenized): Lead-3 (``eval.py model=lead3``), then a short training run of the
   pointer-generator LSTM (``experiment=cnndm_lstm``) and of the small Transformer
   (``experiment=cnndm_transformer_small``); ROUGE-1/2/L x 100 on the same first 300 test pairs
   (beam search as the experiments set it).
5. Steady-state step time, archlab / raw PyTorch, per task (target <= 1.10): classification
   (mnist_cnn), vqa (easy_vqa_cross_attention), generation (mnist_dcgan), summarization
   (cnndm_transformer_small, cnndm_lstm); eager, and with ``model.compile=true`` where the module
   has it (classification, vqa, the Transformer).

How step time is measured. Both sides count training steps from the first batch of the run and time
steps ``W .. W+N-1`` (W = 30 warm-up steps, compilation and recompilation for new shapes included;
N = 50), synchronising the GPU only at the two ends of that window, so the figure is
``window seconds / N``: forward, backward, optimizer and scheduler step, gradient clipping, the
batch's transfer to the GPU and the next batch's loading; no validation, checkpoint or epoch end
inside. archlab's side is a callback added to train.py's run
(``+callbacks.step_timer={_target_: benchmarks.common.step_timer_callback, ...}``, writing
``step_time.json`` to the run folder): the eager figures come from sections 1-4's own runs, the
compiled ones from three more ``train.py ... model.compile=true`` runs cut to W+N batches
(``trainer.limit_train_batches``, no validation or test). The raw side (one child process,
``--raw``) composes the same config (src.utils.config.compose + hydra instantiate:
benchmarks/common.py ``bare_components``), takes the same datamodule's training loader (same
batches, same order), the same net (channels-last, ``net.compile()`` as the modules do), optimizer,
scheduler and clipping, and runs the task's loss under ``torch.autocast(bfloat16)`` in a plain loop
(the GAN: discriminator step, generator step with the other net frozen, EMA update, as
GenerationModule does). The LSTM runs eager only: its teacher-forced decoder is a Python loop over
the target length, which torch.compile specialises on every length (a recompilation per batch).

Time budget on one H200 (seconds of wall time, process start-ups included; "fit" caps are
``trainer.max_time``, which ends a run mid-epoch):

| # | section | bound | budget s |
| --- | --- | --- | --- |
| 0 | suite start, checks | - | 5 |
| 1 | MNIST TTA (+ eager step time) | 3 epochs, fit cap 30 s | 30 |
| 2 | easy-VQA TTA (+ eager step time) | 8 epochs, fit cap 40 s | 55 |
| 3 | DCGAN + FID test (+ eager step time) | fit 180 s, 10k test samples | 200 |
| 4a | Lead-3, 300 test pairs | eval only | 10 |
| 4b | LSTM train + test (+ eager step time) | fit cap 10 s, 300 pairs | 25 |
| 4c | Transformer train + test (+ eager step time) | fit cap 10 s, 300 pairs | 25 |
| 5a | compiled step time: 3 train.py runs | 80 batches each, no val/test | 85 |
| 5b | raw loops: 5 eager + 3 compiled, one process | 80 steps each | 40 |
|   | total | | 475 (<= 480) |

The table's last rows give each section's measured wall time next to its budget.

Carrying it to the GPU machine (Python 3.12, torch, lightning, torchmetrics, transformers,
tokenizers there; hydra-core, omegaconf, rouge-score... not): on this machine, once,

    DATA_DIR=/path/to/data python benchmarks/gpu_suite.py --prepare gpu_carry

downloads the missing packages as wheels into gpu_carry/wheels, copies MNIST, easy-VQA and a cut
of pg_tokenized (first 10,000 training pairs, 64 validation, 300 test) into gpu_carry/data with
the BPE tokenizer those training pairs give (so the GPU does not train it), and refuses in one line
if gpu_carry exceeds 64 MiB. On the GPU machine, with carry=["gpu_carry"]:

    pip install -q --no-index --find-links gpu_carry/wheels -r gpu_carry/requirements.txt \
      && DATA_DIR=$PWD/gpu_carry/data python benchmarks/gpu_suite.py

``--smoke``: the same sections on CPU (trainer=cpu, fp32, no compile: the compiled jobs run
eager), a few steps each, small models and 8 test pairs: every code path in a minute or two.

    DATA_DIR=/path/to/data python benchmarks/gpu_suite.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when train.py imports this module

from common import (  # noqa: E402
    ROOT,
    WindowTimer,
    bare_components,
    bare_optimizer,
    emit,
    last_values,
    metrics_rows,
    print_table,
    run_entry,
)

TARGET_RATIO, TARGET_MNIST, TARGET_VQA, TARGET_GAN = 1.10, 0.993, 0.995, 3.0
BUDGET_S = 480
ROUGE = ("rouge1", "rouge2", "rougeL")
LIMIT_MIB = 64
# what --prepare carries of pg_tokenized: train pairs (the BPE is trained on them), validation, test
CARRY_PAIRS = {"train": 10_000, "validation": 64, "test": 300}
DATA_FILES = ("MNIST/raw/train-images-idx3-ubyte.gz", "easy-VQA/train/questions.json",
              "cnn_dailymail/pg_tokenized/train.jsonl.gz", "cnn_dailymail/pg_tokenized/validation.jsonl.gz",
              "cnn_dailymail/pg_tokenized/test.jsonl.gz")
# packages the suite's code paths import that the GPU machine lacks (or may lack: rich), as wheels (pure
# Python: any 3.x); requirements.txt names them unpinned, so pip installs only the missing ones
WHEELS = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "hydra-colorlog", "colorlog", "rouge-score", "nltk",
          "absl-py", "click", "joblib", "six", "rich", "markdown-it-py", "mdurl", "pygments")
# modules the suite needs on the GPU machine (checked before any work)
MODULES = ("torch", "torchvision", "lightning", "torchmetrics", "hydra", "omegaconf", "colorlog", "rouge_score", "nltk",
           "absl", "rich", "tokenizers", "transformers", "matplotlib", "numpy", "yaml")
SUMMARIZERS = {"lstm": "cnndm_lstm", "transformer": "cnndm_transformer_small"}


# -- settings of a run ----------------------------------------------------------------------------
class Plan:
    """What each section runs: the GPU sizes, or --smoke's CPU sizes."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.trainer = "cpu" if smoke else "gpu"
        self.warmup, self.steps = (4, 4) if smoke else (30, 50)  # >= 8: a one-cycle schedule needs them
        self.test_pairs = 8 if smoke else CARRY_PAIRS["test"]
        # the caps of train.py's fit (trainer.max_time), seconds
        self.caps = {"mnist": 30, "vqa": 40, "gan": 180, "summarization": 10}
        self.budget = {"start": 5, "mnist_tta": 30, "vqa_tta": 55, "gan": 200, "lead3": 10, "lstm": 25, "transformer": 25,
                       "compiled_step_time": 85, "raw_step_time": 40}

    def timer(self) -> str:
        return ("+callbacks.step_timer={_target_:benchmarks.common.step_timer_callback,"
                f"warmup:{self.warmup},steps:{self.steps}}}")

    def common(self) -> list[str]:
        return [f"trainer={self.trainer}", "callbacks.model_summary=null", self.timer()]

    def tiny(self, *kinds: str) -> list[str]:
        """--smoke's cut of a run: a few batches, small models."""
        if not self.smoke:
            return []
        n = self.warmup + self.steps + 1
        cut = [f"trainer.limit_train_batches={n}", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
               "trainer.max_epochs=1", "++trainer.num_sanity_val_steps=0"]
        return cut + [override for kind in kinds for override in {
            "mnist": [], "vqa": [],
            "gan": ["trainer.val_check_interval=1.0", "data.val_size=256"],
            "summarization": ["data.max_examples.train=200", "data.max_examples.validation=8", "data.tokenizer.vocab_size=600",
                              "data.max_source_len=96", "data.max_target_len=24", "data.batch_size=4",
                              "model.generation.beam_size=2", "model.generation.max_len=12", "model.generation.min_len=2",
                              "model.val_generation.max_len=8"],
            "lstm": ["model.net.embed_dim=32", "model.net.hidden=32"],
            "transformer": ["model.net.dim=32", "model.net.num_heads=2", "model.net.encoder_layers=1",
                            "model.net.decoder_layers=1", "model.net.ff_hidden=64"],
        }[kind]]

    def summarization_data(self) -> list[str]:
        train = [] if self.smoke else [f"data.max_examples.train={CARRY_PAIRS['train']}"]  # the pairs the carried BPE knows
        return ["data=cnn_dailymail_pg", *train, f"data.max_examples.test={self.test_pairs}"]

    def run(self, task: str) -> list[str]:
        """train.py overrides of each task's run (sections 1-4), step timer included."""
        def cap(seconds: int) -> str:
            """trainer.max_time (the Timer callback of callbacks=default enforces it)."""
            return f"trainer.max_time=00:00:{seconds // 60:02d}:{seconds % 60:02d}"

        if task == "classification":
            return ["experiment=mnist_cnn", *self.common(), cap(self.caps["mnist"]), *self.tiny("mnist")]
        if task == "vqa":
            return ["experiment=easy_vqa_cross_attention", "data.source=local", *self.common(), cap(self.caps["vqa"]),
                    *self.tiny("vqa")]
        if task == "generation":
            return ["experiment=mnist_dcgan", *self.common(), cap(self.caps["gan"] if not self.smoke else 60),
                    *self.tiny("gan")]
        model = task.split("_", 1)[1]
        return [f"experiment={SUMMARIZERS[model]}", *self.summarization_data(), *self.common(),
                cap(self.caps["summarization"]), "trainer.min_epochs=0", "trainer.max_epochs=1", "trainer.limit_val_batches=2",
                *self.tiny("summarization", model)]

    def timing_only(self, task: str) -> list[str]:
        """The same run cut to the step-time window: W+N batches, no validation or test."""
        n = self.warmup + self.steps
        return [*self.run(task), f"trainer.limit_train_batches={n}", "trainer.max_epochs=1", "trainer.limit_val_batches=0",
                "++trainer.num_sanity_val_steps=0", "callbacks.early_stopping=null", "test=false"]


# -- the raw PyTorch side ---------------------------------------------------------------------------
def raw_step_time(overrides: list[str], compiled: bool, warmup: int, steps: int, run_dir: Path) -> float:
    """Seconds per steady-state step of a bare loop over the same net, batches, optimizer, scheduler,
    clipping and precision as ``train.py <overrides>``."""
    from contextlib import nullcontext

    import torch
    import torch.nn.functional as F

    cfg, dm, net = bare_components(overrides, run_dir)
    m, task = cfg.model, cfg.task.name
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    precision = str(cfg.trainer.precision)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if precision.startswith("bf16") else nullcontext
    clip = cfg.trainer.get("gradient_clip_val")
    ema = None
    if task == "generation":  # GenerationModule: EMA copy made before channels-last, kept in eval mode
        from torch.optim.swa_utils import AveragedModel

        from src.models.ema import ema_average

        ema = AveragedModel(net.generator, avg_fn=ema_average(m.ema_decay), use_buffers=True).to(device).eval()
        ema.requires_grad_(False)
    if m.get("channels_last"):
        net.to(memory_format=torch.channels_last)
    if compiled:
        net.compile()
    net.to(device).train()
    move = lambda b: (b.to(device, non_blocking=True) if torch.is_tensor(b) else  # noqa: E731
                      {k: move(v) for k, v in b.items()} if isinstance(b, dict) else
                      type(b)(move(v) for v in b) if isinstance(b, (list, tuple)) else b)

    if task == "generation":
        if m.gp_weight:
            raise NotImplementedError("raw loop: gradient penalty")
        g, d = net.generator, net.discriminator
        opt_g, _ = bare_optimizer(m.optimizer_g, g.parameters())
        opt_d, _ = bare_optimizer(m.optimizer_d, d.parameters())
        nonsat = m.loss == "nonsaturating"

        def step(batch: Any, i: int) -> None:
            x, y = batch
            if m.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            labels = y if m.conditional else None
            with amp():
                g.requires_grad_(False)  # Lightning's toggle_optimizer: the other net's parameters frozen
                with torch.no_grad():
                    fake = g(torch.randn(len(x), m.latent_dim, device=device), labels)
                d_real, d_fake = d(x, labels), d(fake, labels)
                d_loss = (F.softplus(-d_real).mean() + F.softplus(d_fake).mean() if nonsat
                          else d_fake.mean() - d_real.mean())
                opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                opt_d.step()
                g.requires_grad_(True)
                if i % m.n_critic:
                    return
                d.requires_grad_(False)
                score = d(g(torch.randn(len(x), m.latent_dim, device=device), labels), labels)
                g_loss = F.softplus(-score).mean() if nonsat else -score.mean()
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                d.requires_grad_(True)
                ema.update_parameters(g)
    else:
        opt, sched = bare_optimizer(m.optimizer, net.parameters(), m.get("scheduler"), warmup + steps + 1)
        smoothing = float(m.get("label_smoothing") or 0.0)

        def loss_of(batch: Any) -> torch.Tensor:
            if task == "classification":
                x, y = batch
                return F.cross_entropy(net(x), y, label_smoothing=smoothing)
            if task == "vqa":
                logits = net(batch["image"], batch["question"], batch["image_index"])
                return F.cross_entropy(logits, batch["answer"], label_smoothing=smoothing)
            out = net(batch["source"], batch["target"])
            loss = F.cross_entropy(out.logits.flatten(0, 1), batch["target"].flatten(), ignore_index=net.pad_id,
                                   label_smoothing=smoothing)
            return loss if out.aux_loss is None else loss + out.aux_loss

        def step(batch: Any, i: int) -> None:
            with amp():
                loss = loss_of(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(clip))
            opt.step()
            if sched is not None:
                sched.step()

    loader, timer, i = dm.train_dataloader(), WindowTimer(warmup, steps), 0
    for epoch in range(10**6):
        for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):  # as Lightning does at each epoch start
                sampler.set_epoch(epoch)
        for batch in loader:
            batch = move(batch)
            timer.start(i, device)
            step(batch, i)
            if timer.end(i, device):
                return timer.seconds_per_step
            i += 1
    raise RuntimeError("the loader ran dry")


def raw_child(spec_path: str) -> None:
    """Child process: each variant of the spec in turn; prints one JSON line {key: seconds | error}."""
    import torch

    spec, out = json.loads(Path(spec_path).read_text()), {}
    for key, v in spec["variants"].items():
        try:
            with tempfile.TemporaryDirectory(prefix="raw_") as tmp:
                out[key] = raw_step_time(v["overrides"], v["compiled"], spec["warmup"], spec["steps"], Path(tmp))
        except Exception as e:  # one variant's failure is reported, the others still run
            out[key] = {"error": f"{type(e).__name__}: {e}"[:300]}
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(json.dumps(out), flush=True)


# -- the suite ------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan, self.work = plan, work
        self.rows: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {"smoke": plan.smoke, "trainer": plan.trainer, "warmup_steps": plan.warmup,
                                        "timed_steps": plan.steps, "test_pairs": plan.test_pairs}
        self.wall: dict[str, float] = {}
        self.errors: dict[str, str] = {}
        self.archlab_s: dict[str, float | None] = {}

    def row(self, section: str, item: str, metric: str, value: Any, target: str = "", met: bool | None = None) -> None:
        self.rows.append({"section": section, "item": item, "metric": metric,
                          "value": round(value, 4) if isinstance(value, float) else value,
                          "target": target, "met": "" if met is None else ("yes" if met else "no")})

    def train_py(self, name: str, overrides: list[str], script: str = "train.py") -> tuple[dict[str, str], float, Path] | None:
        """Run an entry point; (last metric values, wall seconds, log dir), or None (error recorded)."""
        log_dir = self.work / name
        print(f"[{time.perf_counter() - T0:6.1f} s] {name}: {script} {' '.join(overrides)}", flush=True)
        seconds, proc = run_entry(script, overrides, log_dir)
        self.wall[name] = round(seconds, 1)
        if proc.returncode:
            lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip() and "HYDRA_FULL_ERROR" not in ln]
            self.errors[name] = next((ln for ln in lines if "[ERROR]" in ln or "ERROR[" in ln),
                                     next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "?"))[-400:]
            print(f"{name} failed:\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            return None
        return last_values(metrics_rows(log_dir)), seconds, log_dir

    def step_time(self, key: str, log_dir: Path | None) -> None:
        found = sorted(log_dir.rglob("step_time.json")) if log_dir else []
        self.archlab_s[key] = json.loads(found[0].read_text())["seconds_per_step"] if found else None
        if log_dir and not found:
            self.errors.setdefault(key, "the run ended before its step-time window closed")

    # 1, 2
    def time_to_accuracy(self, name: str, task: str, target: float) -> str | None:
        out = self.train_py(name, self.plan.run(task))
        self.step_time(f"{task}/eager", out[2] if out else None)
        if not out:
            self.figures[name] = None
            return None
        metrics, seconds, log_dir = out
        acc = float(metrics["test/acc"])
        epochs = sum(1 for r in metrics_rows(log_dir) if r.get("train/epoch_time_s"))
        self.figures[name] = {"wall_s": round(seconds, 1), "test_acc": round(acc, 4), "epochs": epochs, "target_acc": target}
        self.row("time to accuracy", name, "test_acc", acc, f">= {target}", acc >= target)
        self.row("time to accuracy", name, "wall_s", round(seconds, 1))
        ckpts = sorted(log_dir.rglob("last.ckpt"))
        return str(ckpts[0]) if ckpts else None

    # 3
    def gan(self, classifier: str | None) -> None:
        if classifier is None:
            self.errors["gan"] = "no MNIST classifier checkpoint (section 1 failed)"
            self.figures["gan"] = None
            self.archlab_s["generation/eager"] = None
            return
        out = self.train_py("gan", [*self.plan.run("generation"), f"model.metrics.classifier_ckpt={classifier}"])
        self.step_time("generation/eager", out[2] if out else None)
        if not out:
            self.figures["gan"] = None
            return
        metrics = out[0]
        fid, floor = float(metrics["test/fid"]), float(metrics["test/fid_floor"])
        ratio = fid / floor
        self.figures["gan"] = {"fid": round(fid, 3), "fid_floor": round(floor, 3), "fid_ratio": round(ratio, 3),
                               "train_batches": int(float(metrics.get("step", 0))), "wall_s": round(out[1], 1),
                               "target_ratio": TARGET_GAN}
        self.row("gan", "mnist_dcgan", "fid / fid_floor", ratio, f"<= {TARGET_GAN}", ratio <= TARGET_GAN)
        self.row("gan", "mnist_dcgan", "fid", fid)

    # 4
    def summarization(self) -> None:
        scores: dict[str, Any] = {}
        out = self.train_py("lead3", ["model=lead3", *self.plan.summarization_data(), "trainer=cpu"], script="eval.py")
        scores["lead3"] = {k: round(100 * float(out[0][f"test/{k}"]), 2) for k in ROUGE} if out else None
        for model in SUMMARIZERS:
            out = self.train_py(model, self.plan.run(f"summarization_{model}"))
            self.step_time(f"summarization_{model}/eager", out[2] if out else None)
            scores[model] = ({**{k: round(100 * float(out[0][f"test/{k}"]), 2) for k in ROUGE},
                              "train_batches": int(float(out[0].get("step", 0)))} if out else None)
        for model, s in scores.items():
            for k in ROUGE:
                self.row("summarization", model, f"{k} x100", s[k] if s else None)
        self.figures["summarization"] = scores

    # 5
    def compiled_step_times(self) -> None:
        for task in ("classification", "vqa", "summarization_transformer"):
            compile_ = [] if self.plan.smoke else ["model.compile=true"]
            out = self.train_py(f"compiled_{task}", [*self.plan.timing_only(task), *compile_])
            self.step_time(f"{task}/compiled", out[2] if out else None)

    def raw_step_times(self) -> dict[str, Any]:
        variants = {}
        for key in self.archlab_s:
            task, variant = key.split("/")
            compiled = variant == "compiled" and not self.plan.smoke
            variants[key] = {"overrides": self.plan.run(task) + (["model.compile=true"] if compiled else []),
                             "compiled": compiled}
        spec = self.work / "raw_spec.json"
        spec.write_text(json.dumps({"variants": variants, "warmup": self.plan.warmup, "steps": self.plan.steps}))
        print(f"[{time.perf_counter() - T0:6.1f} s] raw loops: {', '.join(variants)}", flush=True)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--raw", str(spec)], cwd=ROOT, capture_output=True, text=True)
        self.wall["raw_step_time"] = round(time.perf_counter() - t, 1)
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            self.errors["raw_step_time"] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:400]
            print(f"raw loops failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            return {}

    def step_time_table(self, raw: dict[str, Any]) -> None:
        ratios: dict[str, dict[str, float | None]] = {}
        times: dict[str, dict[str, Any]] = {}
        for key, ours in self.archlab_s.items():
            task, variant = key.split("/")
            theirs = raw.get(key)
            if isinstance(theirs, dict):
                self.errors[f"raw {key}"] = theirs["error"]
                theirs = None
            ratio = ours / theirs if ours and theirs else None
            ratios.setdefault(task, {})[variant] = round(ratio, 4) if ratio else None
            times.setdefault(task, {})[variant] = {"archlab_ms": round(1000 * ours, 3) if ours else None,
                                                   "raw_ms": round(1000 * theirs, 3) if theirs else None}
            label = variant + (" (smoke: eager)" if self.plan.smoke and variant == "compiled" else "")
            self.row("step time", f"{task} {label}", "archlab / raw", ratio, f"<= {TARGET_RATIO}",
                     None if ratio is None else ratio <= TARGET_RATIO)
            self.row("step time", f"{task} {label}", "archlab ms / raw ms",
                     f"{1000 * ours:.2f} / {1000 * theirs:.2f}" if ours and theirs else None)
        ratios["summarization_lstm"]["compiled"] = None  # see the docstring: not compiled
        self.row("step time", "summarization_lstm compiled", "archlab / raw", "skipped: decoder loop recompiles per length")
        self.figures["step_time_ratio"] = ratios
        self.figures["step_time"] = times

    def run(self) -> None:
        classifier = self.time_to_accuracy("mnist_tta", "classification", TARGET_MNIST)
        self.time_to_accuracy("vqa_tta", "vqa", TARGET_VQA)
        self.gan(classifier)
        self.summarization()
        self.compiled_step_times()
        self.step_time_table(self.raw_step_times())
        groups = {"mnist_tta": ["mnist_tta"], "vqa_tta": ["vqa_tta"], "gan": ["gan"], "lead3": ["lead3"], "lstm": ["lstm"],
                  "transformer": ["transformer"], "raw_step_time": ["raw_step_time"],
                  "compiled_step_time": [k for k in self.wall if k.startswith("compiled_")]}
        sections = {"start": round(self.started, 1), **{g: round(sum(self.wall.get(k, 0.0) for k in ks), 1)
                                                      for g, ks in groups.items()}}
        total = round(time.perf_counter() - T0, 1)
        for name, seconds in sections.items():
            budget = self.plan.budget[name]
            self.row("budget", name, "wall_s", seconds, f"<= {budget}", None if self.plan.smoke else seconds <= budget)
        self.row("budget", "total", "wall_s", total, f"<= {BUDGET_S}", None if self.plan.smoke else total <= BUDGET_S)
        self.figures |= {"sections_wall_s": sections, "budget_s": self.plan.budget, "total_wall_s": total,
                         "target_step_time_ratio": TARGET_RATIO, "errors": self.errors}


# -- checks and --prepare -----------------------------------------------------------------------------
def fail(message: str) -> None:
    sys.exit(f"gpu_suite: {message}")


def check_data(path: str | None) -> Path:
    if not path:
        fail("DATA_DIR is not set; set it to a writable folder with MNIST, easy-VQA and cnn_dailymail/pg_tokenized "
             "(on the GPU machine: DATA_DIR=$PWD/gpu_carry/data)")
    missing = [f for f in DATA_FILES if not Path(path, f).exists()]
    if missing:
        fail(f"DATA_DIR={path} lacks {', '.join(missing)}")
    if not os.access(Path(path, "MNIST", "raw"), os.W_OK):
        fail(f"DATA_DIR={path} is not writable (torchvision extracts MNIST next to its archives); copy it first")
    return Path(path)


def check_modules() -> None:
    import importlib.util

    missing = [m for m in MODULES if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"missing Python modules: {', '.join(missing)}; install them first (GPU machine: pip install --no-index "
             "--find-links gpu_carry/wheels -r gpu_carry/requirements.txt)")


def copy_pairs(src: Path, dst: Path, n: int) -> None:
    """The first ``n`` lines of a .jsonl.gz."""
    import gzip

    with gzip.open(src, "rt") as f:
        lines = [line for _, line in zip(range(n), f)]
    with gzip.open(dst, "wt", compresslevel=9) as f:
        f.writelines(lines)


def size_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def prepare(out: Path, source: Path) -> None:
    """Wheels + data for the GPU machine in ``out``; refuses if it exceeds 64 MiB."""
    from importlib.metadata import PackageNotFoundError, version

    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    wheels, data = out / "wheels", out / "data"
    wheels.mkdir(parents=True)
    pins = []
    for name in WHEELS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    print(f"wheels: {' '.join(pins)}", flush=True)
    # pure-Python packages: `pip wheel` takes the published wheel or builds one from the sdist (antlr4, rouge-score)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), *pins],
                          capture_output=True, text=True)
    if proc.returncode:
        fail(f"pip wheel failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    impure = [w.name for w in wheels.glob("*.whl") if not w.name.endswith("-none-any.whl")]
    if impure:
        fail(f"wheels not pure Python (built for this machine, not the GPU's Python 3.12): {', '.join(impure)}")
    (out / "requirements.txt").write_text("".join(f"{p.split('==')[0]}\n" for p in pins))

    shutil.copytree(source / "MNIST" / "raw", data / "MNIST" / "raw",
                    ignore=lambda d, names: [n for n in names if not n.endswith(".gz")])
    shutil.copytree(source / "easy-VQA", data / "easy-VQA")
    pg = data / "cnn_dailymail" / "pg_tokenized"
    pg.mkdir(parents=True)
    for split, n in CARRY_PAIRS.items():
        copy_pairs(source / "cnn_dailymail" / "pg_tokenized" / f"{split}.jsonl.gz", pg / f"{split}.jsonl.gz", n)
    # the BPE of those training pairs, cached where the runs look for it (keyed by the texts and settings)
    from src.utils.config import compose
    from src.utils.instantiate import instantiate_component

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DATA_DIR"] = str(data)
        cfg = compose("train", ["experiment=cnndm_transformer_small", *Plan(smoke=False).summarization_data()], tmp)
        dm = instantiate_component(cfg.data)
        dm.setup("fit")
        dm.tokenizer  # noqa: B018  (trained and cached on first use)
    repo = sum(Path(ROOT, f).stat().st_size for f in subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True
    ).stdout.splitlines() if Path(ROOT, f).is_file()) / 2**20
    total = size_mib(out)
    print(f"{out}: {total:.1f} MiB (wheels {size_mib(wheels):.1f}, data {size_mib(data):.1f}); "
          f"the checkout beside it: {repo:.1f} MiB", flush=True)
    if total > LIMIT_MIB:
        fail(f"{out} is {total:.1f} MiB, over the {LIMIT_MIB} MiB that can be carried; carry fewer training pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every section on CPU, a few steps each")
    parser.add_argument("--prepare", nargs="?", const="gpu_carry", metavar="DIR",
                        help="write the wheels and data to carry to the GPU machine into DIR (default gpu_carry)")
    parser.add_argument("--keep", metavar="DIR", help="keep the runs' folders in DIR (default: a temporary folder)")
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw:
        return raw_child(args.raw)
    data = check_data(os.environ.get("DATA_DIR"))
    if args.prepare:
        return prepare(Path(args.prepare), data)
    check_modules()
    import torch

    if not args.smoke and not torch.cuda.is_available():
        fail("no CUDA GPU visible; run on the GPU machine, or --smoke for the CPU version")
    plan = Plan(args.smoke)
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        suite = Suite(plan, work)
        suite.started = time.perf_counter() - T0
        suite.run()
    print_table(suite.rows)
    errors = suite.errors
    print(f"\n{'smoke (CPU, tiny budgets)' if plan.smoke else 'H200'}: total {suite.figures['total_wall_s']} s"
          + (f"; failures: {'; '.join(f'{k}: {v}' for k, v in errors.items())}" if errors else ""))
    emit({**suite.figures, "table": suite.rows})
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
