"""What the test modules share: composed configs, quiet overrides, real-data folders, entry points
run as a user runs them, synthetic stand-ins for the datasets, and the resume harness."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, OmegaConf, open_dict

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

from src.data.sources import images  # noqa: E402
from src.utils.config import compose, group_options, option_tasks, register_resolvers  # noqa: E402
from train import train  # noqa: E402

register_resolvers()
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))  # the 2 cores CI has, unless told

# No progress bar, config tree or model summary: what every test run leaves out.
QUIET = ["trainer.enable_progress_bar=false", "extras.print_config=false", "callbacks.rich_progress_bar=null",
         "callbacks.model_summary=null"]
FAST = [*QUIET, "trainer.max_epochs=1"]


def compatible_pairs(task: str | None = None) -> list[tuple[str, str]]:
    """Every (model, data) pair whose data serves the model's task, optionally of one task only."""
    models, data = option_tasks("model"), option_tasks("data")
    return [(m, d) for m, (t,) in models.items() for d in data if t in data[d] and task in (None, t)]


@pytest.fixture
def cfg_train(tmp_path: Path):
    """``python train.py <FAST> <overrides>`` composed, its run dir ``tmp_path/run`` (created, as
    Hydra would)."""
    (tmp_path / "run").mkdir(exist_ok=True)
    return lambda *overrides: compose("train", [*FAST, *overrides], tmp_path / "run")


# -- real data ----------------------------------------------------------------------------------
@pytest.fixture
def data_dir() -> Path:
    """A writable copy of ../shared/data (torchvision extracts next to the archives), or the
    folder named by DATA_DIR."""
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"])
    if not SHARED_DATA.exists():
        pytest.skip("no DATA_DIR and no ../shared/data beside the repo")
    return SHARED_DATA


@pytest.fixture
def mnist_dir(data_dir: Path, tmp_path_factory) -> Path:
    if not (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST archives not found in {data_dir}/MNIST/raw (set DATA_DIR to a copy of ../shared/data)")
    if os.access(data_dir / "MNIST" / "raw", os.W_OK):
        return data_dir
    copy = tmp_path_factory.mktemp("data")
    shutil.copytree(data_dir / "MNIST", copy / "MNIST")
    return copy


# -- entry points as a user runs them ---------------------------------------------------------------
def run_cli(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run an entry point as a user would; returns the finished process (stdout+stderr merged)."""
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update(env or {})
    full_env["PROJECT_ROOT"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (a test's server or DDP rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_eval_reproduces(metrics: dict[str, Any], ckpt: str, out: Path) -> None:
    """eval.py from the checkpoint alone (in-process, its run dir ``out``) gives train.py's test
    accuracy and loss."""
    from eval import evaluate

    out.mkdir()
    evaluated, _ = evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={ckpt}"], out))
    for key in ("test/acc", "test/loss"):
        assert float(evaluated[key]) == pytest.approx(float(metrics[key]), rel=1e-5), key


def run_dirs(log_dir: Path) -> list[Path]:
    """Every folder Hydra made (it writes .hydra/ in each run/job dir)."""
    return sorted(p.parent for p in log_dir.rglob(".hydra"))


def run_ok(entry: str, overrides: list[str], log_dir: Path, env: dict | None = None) -> Path:
    """Run ``entry`` (train.py or eval.py) quietly under ``log_dir``; it must succeed without a
    traceback. Returns its run folder."""
    quiet = QUIET if entry == "train.py" else QUIET[:2]
    proc = run_cli([entry, *overrides, f"paths.log_dir={log_dir}", *quiet], env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
    (run_dir,) = run_dirs(log_dir)
    return run_dir


def wandb_env(home: Path) -> dict[str, str]:
    """W&B offline, without the user's settings or key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(home), WANDB_DIR=str(home / "wandb_cache"))
    return env


def offline_runs(run: Path) -> list[tuple[str, bytes]]:
    """(run id, records) of each W&B offline run in a run dir: what `wandb sync` uploads."""
    return [(d.name.rsplit("-", 1)[1], next(d.glob("run-*.wandb")).read_bytes())
            for d in sorted((run / "wandb").glob("offline-run-*"))]


# -- synthetic stand-ins for the datasets --------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def image_shapes() -> dict[str, list[int]]:
    """The image shape each dataset's data configs declare (before any resizing)."""
    shapes = {}
    for name in group_options("data"):
        cfg = compose("train", [f"data={name}"]).data
        # a user's folder (data=image_folder) has the shape of its files: write_image_folder's
        if cfg.get("dataset") and "root" not in cfg and "classification" in cfg.provides.tasks:
            shapes[cfg.dataset] = list(cfg.provides.image_shape)
    return shapes


@pytest.fixture
def synthetic_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every downloadable image dataset becomes random images of the shape its data config declares
    (10 classes; 6,000 training images, enough for the validation splits the configs carve out),
    so the model x data matrix runs in seconds and without the files (real data: test_real_data.py)."""
    shapes = image_shapes()

    def fake(dataset: str):
        def read(data_dir: str, train: bool, **options) -> tuple[torch.Tensor, torch.Tensor]:
            g = torch.Generator().manual_seed(int(train))
            n = 6000 if train else 32
            return torch.randint(0, 256, (n, *shapes[dataset]), dtype=torch.uint8, generator=g), torch.arange(n) % 10
        return read

    for name, source in list(images.IMAGE_SOURCES.items()):
        if source.downloads:
            monkeypatch.setitem(images.IMAGE_SOURCES, name, images.ImageSource(fake(name), source.mean, source.std))


def write_image_folder(root: Path, per_class: int = 16, classes: int = 3, seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: small images of mixed sizes, grayscale and colour (data=image_folder
    reads ``${paths.data_dir}/images`` by default), each class its own brightness."""
    from PIL import Image

    rng = random.Random(seed)
    for label in range(classes):
        for i in range(per_class):
            w, h = rng.randint(6, 20), rng.randint(6, 20)
            pixels = bytes(min(255, label * 80 + rng.randint(0, 60)) for _ in range(w * h * 3))
            path = root / f"class_{label}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.frombytes("RGB", (w, h), pixels).convert("L" if i % 2 else "RGB").save(path)
    return root


SHAPES, COLORS = ("circle", "square", "triangle"), {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220)}


def write_vqa_folder(root: Path, n: int = 40, seed: int = 0, modes: tuple[str, ...] = ("RGB", "RGBA", "P", "RGB")) -> Path:
    """``root/images/<i>.png`` (one coloured shape each, of mixed sizes and modes) and
    ``root/train.jsonl`` of three templated questions per image (shape, colour, yes/no):
    data=vqa_folder reads ``${paths.data_dir}/vqa`` by default."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        shape, color = SHAPES[i % 3], list(COLORS)[(i // 3) % 3]
        w, h = rng.randint(16, 48), rng.randint(16, 48)
        image = Image.new("RGB", (w, h), (255, 255, 255))
        box = (w // 5, h // 5, w - w // 5, h - h // 5)
        draw = ImageDraw.Draw(image)
        if shape == "circle":
            draw.ellipse(box, fill=COLORS[color])
        elif shape == "square":
            draw.rectangle(box, fill=COLORS[color])
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), (w // 2, box[1])], fill=COLORS[color])
        path = root / "images" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.convert(modes[i % len(modes)]).save(path)
        asked = SHAPES[rng.randrange(3)]
        rows += [{"image": f"images/{i}.png", "question": "What shape is in the image?", "answer": shape},
                 {"image": f"images/{i}.png", "question": "What color is the shape?", "answer": color},
                 {"image": f"images/{i}.png", "question": f"Is there a {asked}?", "answer": "yes" if asked == shape else "no"}]
    write_jsonl(root / "train.jsonl", rows)
    return root


WORDS = ("the cat dog bird sat ran flew over under near big small red blue green house tree river hill "
         "city road car boat train plane old new quick slow happy sad king queen man woman child").split()


def synthetic_pairs(n: int, seed: int = 0, sentences: int = 4) -> list[dict[str, str]]:
    """Articles of a few capitalised sentences; the highlights are two of them, one per line."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 7))).capitalize() + "." for _ in range(sentences)]
        rows.append({"id": f"ex{i}", "article": " ".join(sents), "highlights": f"{sents[0]}\n{sents[2]}"})
    return rows


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def synthetic_pairs_dir(root: Path, n_train: int = 24, n_eval: int = 8, same: bool = False) -> Path:
    """``root/{train,validation,test}.jsonl``; ``same``: every split holds the training pairs."""
    train_rows = synthetic_pairs(n_train)
    write_jsonl(root / "train.jsonl", train_rows)
    write_jsonl(root / "validation.jsonl", train_rows if same else synthetic_pairs(n_eval, seed=1))
    write_jsonl(root / "test.jsonl", train_rows if same else synthetic_pairs(n_eval, seed=2))
    return root


def pairs_overrides(root: Path, cache: Path, vocab_size: int = 400) -> list[str]:
    """data=cnn_dailymail_pg on ``root``, with a small BPE cached in ``cache`` and short sequences."""
    return ["data=cnn_dailymail_pg", f"data.data_dir={root}", f"data.tokenizer.cache_dir={cache}",
            f"data.tokenizer.vocab_size={vocab_size}", "data.max_source_len=64", "data.max_target_len=24",
            "data.batch_size=4"]


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A 1+1-layer BART with the byte-level BPE of the synthetic pairs, saved like a hub model:
    what ``model=hf_seq2seq`` loads by name when online."""
    from transformers import BartConfig, BartForConditionalGeneration

    from src.data.tokenizers import train_bpe

    out = tmp_path_factory.mktemp("tiny_bart")
    pairs = synthetic_pairs(24)
    tok = train_bpe([p["article"] for p in pairs] + [p["highlights"] for p in pairs], 400, 2)
    tok.save_pretrained(out)
    config = BartConfig(vocab_size=len(tok), d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=128,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None,
                        forced_bos_token_id=None, dropout=0.0)
    torch.manual_seed(0)
    BartForConditionalGeneration(config).save_pretrained(out)
    return out


# -- a short training run of each task ------------------------------------------------------------------
LIMITS = ["trainer.limit_train_batches=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]


def task_runs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Per task: a short training run with settings that differ from its model's defaults, and its
    test metric."""
    pairs = synthetic_pairs_dir(tmp_path / "pairs")
    return {
        "classification": (["model=resnet9", "model.net.width=8", "data.batch_size=32"], "test/acc"),
        "vqa": (["model=fusion", "data=easy_vqa", "model.net.fusion=film", "model.net.dim=32", "data.batch_size=8"],
                "test/acc"),
        "generation": (["model=dcgan", "data=digits", "model.metrics.feature=pixels", "model.conditional=true",
                        "model.latent_dim=16"], "test/fid"),
        "summarization": ([*pairs_overrides(pairs, tmp_path / "cache"), "model=transformer", "model.net.dim=32",
                           "model.net.num_heads=2", "model.net.encoder_layers=1", "model.net.decoder_layers=1",
                           "model.net.ff_hidden=64", "model.generation.max_len=8", "model.generation.min_len=0",
                           "model.val_generation.max_len=8"], "test/rouge1"),
    }


Trained = tuple[Path, dict[str, Any]]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """The best checkpoint of a short training run of a task (trained once per test session), and the
    run's objects."""
    runs: dict[str, Trained] = {}

    def get(task: str) -> Trained:
        if task not in runs:
            root = tmp_path_factory.mktemp(task)
            overrides, _ = task_runs(root)[task]
            _, objects = train(compose("train", [*FAST, *LIMITS, *overrides], root / "train"))
            runs[task] = Path(objects["trainer"].checkpoint_callback.best_model_path), objects
        return runs[task]

    return get


# -- resume harness -----------------------------------------------------------------------------------
class StopAfterEpochs(Callback):
    """Simulates an interrupted run: stops after ``epochs`` epochs (last.ckpt is written)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.should_stop = trainer.current_epoch + 1 >= self.epochs


def final_weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, weights_only=True)["state_dict"]


def full_interrupted_resumed(common: list[str], tmp_path: Path) -> tuple[Path, Path, Path]:
    """Run ``common`` for its epochs uninterrupted; again stopped after epoch 1; then resumed
    from that run's last.ckpt. Returns the three last.ckpt paths."""
    train(compose("train", common, tmp_path / "full"))
    first = compose("train", common, tmp_path / "first")
    with open_dict(first):
        first.callbacks.stop = {"_target_": "tests.conftest.StopAfterEpochs", "epochs": 1}
    train(first)
    interrupted = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(interrupted, weights_only=True)["epoch"] == 0
    train(compose("train", [*common, f"ckpt_path={interrupted}"], tmp_path / "resumed"))
    return tmp_path / "full" / "checkpoints" / "last.ckpt", interrupted, tmp_path / "resumed" / "checkpoints" / "last.ckpt"


def metrics_csv(run: Path) -> dict[str, str]:
    """The last logged value of every metric in a run's CSV logs (a resumed run's later versions last)."""
    last: dict[str, str] = {}
    for version in sorted((run / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1])):
        with open(version / "metrics.csv") as f:
            for row in csv.DictReader(f):
                last.update({k: v for k, v in row.items() if v})
    return last


def to_container(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)
