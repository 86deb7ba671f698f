"""Answer new inputs with a trained model:
``python predict.py ckpt_path=<run>/checkpoints/<file>.ckpt inputs=<file, folder, JSONL or ->``.

set-up (src/session.py, as eval.py: the checkpoint carries its model, data settings and tokenizer)
-> read the inputs (src/data/inputs.py) -> answer them in batches (src/predictor.py) ->
``predictions.jsonl`` in the run folder, one row per input with the input echoed; a generator
writes ``samples/*.png`` and ``grid.png``.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.io import decode_image
from torchvision.utils import save_image

from src.core.errors import ConfigError
from src.data.inputs import read_inputs
from src.predictor import Predictor
from src.session import build
from src.utils.config import refuse_removed_options, register_resolvers
from src.utils.pylogger import RankedLogger
from src.utils.run import task_wrapper

register_resolvers()
log = RankedLogger(__name__)


def sample_rows(cfg: DictConfig, num_classes: int, conditional: bool) -> list[dict[str, Any]]:
    """A generator's inputs: ``num_samples`` labels, ``label`` or every class in turn."""
    n, label = cfg.num_samples, cfg.get("label")
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_samples={n!r} must be a positive whole number of images")
    if label is not None and not conditional:
        raise ConfigError("label= needs a class-conditional generator; this one is unconditional: drop label=")
    if label is not None and not (isinstance(label, int) and 0 <= label < num_classes):
        raise ConfigError(f"label={label!r} is not a class of this generator (0..{num_classes - 1})")
    if not conditional:
        return [{} for _ in range(n)]
    return [{"label": label if label is not None else i % num_classes} for i in range(n)]


def save_grid(out: Path, rows: list[dict[str, Any]]) -> Path:
    """The generated samples side by side in ``grid.png``."""
    images = torch.stack([decode_image(str(out / row["file"])) for row in rows if "file" in row]).float() / 255
    save_image(images, out / "grid.png", nrow=max(1, int(len(images) ** 0.5)))
    return out / "grid.png"


@task_wrapper
def predict(cfg: DictConfig) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rebuild the checkpoint's model, answer every input (a bad one gets an ``error`` in its row)
    and write ``predictions.jsonl``; returns the rows and the session's objects."""
    session = build(cfg, "predict")
    predictor = Predictor(session, cfg.batch_size, cfg.top_k, OmegaConf.to_container(cfg.decoding), cfg.backend,
                          cfg.get("artifact"))
    if predictor.kind == "labels":
        hp = session.module.hparams
        inputs = sample_rows(cfg, hp.num_classes, hp.conditional)
    else:
        inputs = read_inputs(cfg.get("inputs"), predictor.kind)
    log.info(f"Predicting {len(inputs)} inputs with {cfg.ckpt_path or cfg.model._target_}")
    answers = predictor.answer(inputs)
    rows = [{"input": row, **answer} for row, answer in zip(inputs, answers)]
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "predictions.jsonl", "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    failed = sum("error" in row for row in rows)
    shown = "\n".join(json.dumps(row)[:300] for row in rows[: cfg.show])
    log.info(f"{len(rows) - failed} answered, {failed} failed; first rows:\n{shown}")
    if predictor.kind == "labels":
        log.info(f"Samples in {out / 'samples'}, grid in {save_grid(out, rows)}")
    log.info(f"Predictions written to {out / 'predictions.jsonl'}")
    return rows, session.objects()


@hydra.main(version_base="1.3", config_path="configs", config_name="predict.yaml")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    refuse_removed_options(sys.argv[1:])
    main()
