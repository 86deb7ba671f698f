"""Knowledge distillation (distill=kd): the teacher is frozen, never trained or checkpointed with
the student, not needed to evaluate it; the loss is Hinton et al.'s; a bad teacher is one line."""

import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer
from omegaconf import DictConfig, open_dict

from eval import evaluate
from src.core.errors import CheckpointError, ConfigError
from src.models.distillation import Distiller
from src.session import distil
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import FAST, QUIET, metrics_csv, run_cli
from train import train

LIMITS = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
DENSE = ["model=dense", "model.net.hidden=[32]", *LIMITS]  # the student; its teacher is wider
VQA = ["model=fusion", "data=easy_vqa", "model.net.dim=32", "data.batch_size=8"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A dense net trained on digits for a few steps: what a teacher checkpoint holds."""
    out = tmp_path_factory.mktemp("teacher")
    train(compose("train", [*FAST, "model=dense", "model.net.hidden=[48]", *LIMITS, "test=false"], out))
    return out / "checkpoints" / "last.ckpt"


class TeacherProbe(Callback):
    """Records, at every training step, whether the teacher is in eval mode, and which parameters
    the optimizer updates."""

    def __init__(self) -> None:
        self.teacher_training: list[bool] = []
        self.optimized: set[int] = set()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.teacher_training.append(pl_module.distiller.teacher.training)
        self.optimized |= {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}


def distilled_module(cfg: DictConfig) -> LightningModule:
    """The module train.py builds from ``cfg``, the distiller handed to it (or none)."""
    module = instantiate_component(cfg.model)
    distil(cfg, module)
    return module


def distilled(cfg_train, teacher: Path, *overrides: str):
    cfg = cfg_train(*DENSE, "distill=kd", f"distill.teacher_ckpt={teacher}", *overrides)
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "tests.test_distillation.TeacherProbe"}
    return cfg


def test_student_learns_from_a_frozen_unsaved_teacher(cfg_train, teacher: Path, tmp_path: Path) -> None:
    own = tmp_path / "teacher.ckpt"  # a copy, removed before evaluation
    shutil.copy(teacher, own)
    cfg = distilled(cfg_train, own, "trainer.max_epochs=2")
    metrics, objects = train(cfg)
    module, trainer = objects["model"], objects["trainer"]
    probe = next(c for c in trainer.callbacks if isinstance(c, TeacherProbe))
    teacher_net = module.distiller.teacher
    # not trained: in eval mode at every step, outside the optimizer, its weights those of the file
    assert probe.teacher_training == [False] * 8
    assert probe.optimized == {id(p) for p in module.parameters()}
    assert not probe.optimized & {id(p) for p in teacher_net.parameters()}
    stored = torch.load(teacher, weights_only=True)["state_dict"]
    assert all(torch.equal(v, stored[f"net.{k}"]) for k, v in teacher_net.state_dict().items())
    assert {"train/loss_hard", "train/loss_kd"} <= set(metrics_csv(Path(cfg.paths.output_dir)))
    # not saved: the student's checkpoint holds the student alone, and plain values only
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(ckpt["state_dict"]) == set(module.state_dict())
    assert sum(k.startswith("net.") for k in ckpt["state_dict"]) == len(module.net.state_dict())
    assert "distiller" not in ckpt["hyper_parameters"]
    # not needed to evaluate the student
    own.unlink()
    evaluated, _ = evaluate(compose("eval", [*QUIET[:2], f"ckpt_path={trainer.checkpoint_callback.best_model_path}",
                                             "trainer.limit_test_batches=2"], tmp_path / "eval"))
    assert float(evaluated["test/acc"]) == pytest.approx(float(metrics["test/acc"]), rel=1e-5)


def test_loss_is_hintons(teacher: Path) -> None:
    student = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]])
    teacher_logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    hard = torch.tensor(0.8)
    t, alpha = 2.0, 0.7

    def softmax(row):
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    kl = sum(pt * math.log(pt / ps) for s, q in zip(student.tolist(), teacher_logits.tolist())
             for pt, ps in zip(softmax(q), softmax(s))) / 2
    kd = Distiller(str(teacher), temperature=t, alpha=alpha)
    assert kd.mix(hard, kd.soft_loss(student, teacher_logits)).item() == pytest.approx(alpha * t * t * kl + (1 - alpha) * 0.8)
    # alpha=0: the labels alone, exactly; identical distributions: no soft loss
    assert torch.equal((d := Distiller(str(teacher), alpha=0.0)).mix(hard, d.soft_loss(student, teacher_logits)), hard)
    assert kd.soft_loss(student, student).abs().item() < 1e-6
    # the soft targets' gradient pulls the student toward the teacher
    s = student.clone().requires_grad_(True)
    kd.soft_loss(s, teacher_logits).backward()
    assert torch.allclose(s.grad, t * (F.softmax(s / t, 1) - F.softmax(teacher_logits / t, 1)).detach() / 2)


def faked(teacher: Path, tmp_path: Path, task: str | None = None, **model) -> Path:
    """The teacher checkpoint with its stored config edited: another task, other classes."""
    ckpt = torch.load(teacher, weights_only=True)
    ckpt["archlab"]["config"]["model"].update(model)
    if task is not None:
        ckpt["archlab"]["config"]["task"]["name"] = task
    path = tmp_path / "faked.ckpt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(("fake", "error", "message"), [
    ({"task": "vqa"}, ConfigError, "is a 'vqa' model, the student a 'classification' one"),
    ({"task": "generation"}, ConfigError, "is a 'generation' model; distillation needs a teacher that predicts labels"),
    ({"num_classes": 5}, ConfigError, "predicts 5 classes, the student 10"),
    ({"archlab": None}, CheckpointError, "has no archlab record"),
])
def test_teacher_of_other_labels_is_refused(fake: dict, error: type, message: str, cfg_train, teacher: Path,
                                            tmp_path: Path) -> None:
    if "archlab" in fake:
        ckpt = torch.load(teacher, weights_only=True)
        del ckpt["archlab"]
        torch.save(ckpt, path := tmp_path / "bare.ckpt")
    else:
        path = faked(teacher, tmp_path, **fake)
    with pytest.raises(error, match=message):
        distilled_module(cfg_train(*DENSE, "distill=kd", f"distill.teacher_ckpt={path}"))


@pytest.mark.parametrize(("override", "message"), [
    ("distill.temperature=0", "distill.temperature=0 must be > 0"),
    ("distill.alpha=1.5", "distill.alpha=1.5 must be in [0, 1]"),
])
def test_bad_settings_are_refused(override: str, message: str, cfg_train, teacher: Path) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        distilled_module(cfg_train(*DENSE, "distill=kd", f"distill.teacher_ckpt={teacher}", override))


@pytest.mark.parametrize("bad", ["missing", "vqa", "unset"])
def test_bad_teacher_is_one_logged_line_and_exit_1(bad: str, cfg_train, teacher: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path = {"missing": tmp_path / "nowhere.ckpt", "vqa": faked(teacher, tmp_path, task="vqa"), "unset": "null"}[bad]
    expected = {"missing": f"CheckpointError: distill.teacher_ckpt={path} does not exist",
                "vqa": f"ConfigError: the teacher {path} (model=dense) is a 'vqa' model, the student a 'classification' one",
                "unset": "ConfigError: distill=kd needs a trained teacher: set distill.teacher_ckpt="}[bad]
    with pytest.raises(SystemExit) as e:
        train(cfg_train(*DENSE, "distill=kd", f"distill.teacher_ckpt={path}"))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert e.value.code == 1 and len(errors) == 1 and expected in errors[0] and "Traceback" not in caplog.text, caplog.text


@pytest.mark.slow  # a command-line run; test_bad_teacher_is_one_logged_line_and_exit_1 covers it in-process
def test_bad_teacher_is_one_line_from_the_command_line(teacher: Path, tmp_path: Path) -> None:
    path = faked(teacher, tmp_path, num_classes=5)
    proc = run_cli(["train.py", *DENSE, "distill=kd", f"distill.teacher_ckpt={path}",
                    f"paths.log_dir={tmp_path / 'logs'}", *QUIET])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out, out[-3000:]
    assert f"ConfigError: the teacher {path} (model=dense) predicts 5 classes, the student 10" in out, out[-3000:]


def test_distill_none_leaves_no_distiller(cfg_train) -> None:
    assert cfg_train(*DENSE).distill is None and cfg_train(*DENSE, "distill=none").distill is None
    assert distilled_module(cfg_train(*DENSE)).distiller is None
    # settings without distill=kd (experiment=mnist_kd_distilled distill=none) are one line
    with pytest.raises(ConfigError, match=r"distill=\{'temperature': 20.0, 'alpha': 0.9\} has no teacher to distil"):
        distilled_module(cfg_train("experiment=mnist_kd_distilled", "distill=none"))


def test_distilling_a_task_without_labels_is_one_line(cfg_train, teacher: Path) -> None:
    with pytest.raises(ConfigError, match=r"distill=kd distils labels \(classification or vqa tasks\); task=generation"):
        distilled_module(cfg_train("model=dcgan", "distill=kd", f"distill.teacher_ckpt={teacher}"))


@pytest.mark.slow  # trains a VQA teacher, then its student; the classification student stays in the default suite
def test_vqa_student_distils_from_a_vqa_teacher(tmp_path: Path) -> None:
    """A cross-attention teacher, a concat student: the teacher is called as the student is."""
    train(compose("train", [*FAST, *VQA, "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "test=false"],
                  tmp_path / "teacher"))
    ckpt = tmp_path / "teacher" / "checkpoints" / "last.ckpt"
    metrics, objects = train(compose("train", [*QUIET, *VQA, "model.net.fusion=concat", "distill=kd",
                                               f"distill.teacher_ckpt={ckpt}", "trainer.fast_dev_run=2"],
                                     tmp_path / "student"))
    student = objects["model"]
    assert type(student.distiller.teacher.fusion) is not type(student.net.fusion)
    assert all(torch.isfinite(metrics[k]) for k in ("train/loss", "train/loss_hard", "train/loss_kd")), metrics
