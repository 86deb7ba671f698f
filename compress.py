"""Compress a trained checkpoint and measure it before and after:
``python compress.py ckpt_path=<run>/checkpoints/<file>.ckpt compression=int8_static``.

The checkpoint carries its model and data. The run dir gets the compressed artifact,
``compression.md`` and ``compression.json``: size (MB, gzip MB), non-zero parameters, CPU
latency per batch size and thread count, the test metrics, and the largest difference from the
fp32 net's outputs.
"""

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra
import torch
from lightning import Callback, Trainer
from omegaconf import DictConfig
from torch import nn

from src.callbacks.run_metadata import RunMetadata
from src.compression.measure import latency_ms, nonzero_params, size_mb
from src.compression.recipes import Job, Recipe
from src.core.errors import ConfigError
from src.session import build, make_trainer
from src.utils.config import refuse_removed_options, register_resolvers
from src.utils.instantiate import instantiate_component
from src.utils.pylogger import RankedLogger
from src.utils.results import markdown
from src.utils.run import task_wrapper

register_resolvers()
log = RankedLogger(__name__)


def _examples(module: Any, datamodule: Any, n: int) -> tuple[Any, ...]:
    """The net's inputs for the first ``n`` test examples (the DataModule's ``test_batch``)."""
    return tuple(module.net_inputs(datamodule.test_batch(n)))


def _measure(cfg: DictConfig, job: Job, name: str, net: nn.Module, artifact: Path,
             reference: torch.Tensor | None) -> tuple[dict[str, Any], torch.Tensor]:
    """One row of the table: test metrics through the task module's test loop, then size, sparsity
    and latency of ``net`` alone."""
    module = job.module
    original, module.net = module.net, net
    trainer = make_trainer(cfg, [], loggers=False, default_root_dir=str(job.out_dir / name), enable_checkpointing=False)
    metrics = trainer.test(module, datamodule=job.datamodule, verbose=False)[0]
    module.net = original
    mb, gz = size_mb(artifact)
    row: dict[str, Any] = {"variant": name, "size_mb": round(mb, 4), "gzip_mb": round(gz, 4),
                           "nonzero_params": nonzero_params(net)}
    for batch_size in cfg.latency.batch_sizes:
        inputs = job.examples(batch_size)
        for threads in cfg.latency.threads:
            n = threads or torch.get_num_threads()
            row[f"ms_b{batch_size}_t{n}"] = round(latency_ms(net.eval(), inputs, n, cfg.latency.repeats), 3)
    row.update({k: round(float(v), 5) for k, v in metrics.items()})
    with torch.inference_mode():  # the last probe batch, compared with the fp32 net on the same one
        outputs = net(*inputs).float()
    row["max_abs_diff"] = None if reference is None else float((outputs - reference).abs().max())
    return row, outputs


def scale_learning_rates(module: Any, scale: float) -> None:
    """Fine-tune a trained net at ``scale`` times the learning rate it was trained with (and the
    one-cycle peak, when its schedule has one): a net that has converged, then lost weights or
    channels, diverges at a from-scratch rate (a ResNet-9 trained at SGD lr 0.2 did)."""
    if not scale > 0:
        raise ConfigError(f"finetune.lr_scale={scale} must be > 0")
    for name, key in (("optimizer_factory", "lr"), ("scheduler_factory", "max_lr")):
        factory = getattr(module, name)
        if isinstance(factory, functools.partial) and key in factory.keywords:
            setattr(module, name, functools.partial(factory, **{key: factory.keywords[key] * scale}))


@task_wrapper
def compress(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load the checkpoint (``weights_only=True``), test it, apply ``cfg.compression``, test the
    result, and write the artifact and the before/after table to the run dir."""
    session = build(cfg, "compress")
    module, datamodule, choices = session.module, session.datamodule, session.choices
    recipe: Recipe = instantiate_component(cfg.compression)
    if cfg.task.name not in recipe.tasks:
        raise ConfigError(f"compression={choices.get('compression', recipe.name)} works on {', '.join(recipe.tasks)} "
                          f"checkpoints; {cfg.ckpt_path} is a {cfg.task.name} checkpoint")
    datamodule.prepare_data()
    datamodule.setup("test")
    out = Path(cfg.paths.output_dir)

    scale_learning_rates(module, cfg.finetune.lr_scale)

    def finetune(epochs: int, callbacks: list[Callback]) -> Trainer:
        trainer = make_trainer(cfg, [*callbacks, RunMetadata(session.resolved, choices)], max_epochs=epochs,
                               enable_checkpointing=False)
        trainer.fit(module, datamodule=datamodule)
        return trainer

    job = Job(module, datamodule, finetune, lambda n: _examples(module, datamodule, n), out)
    fp32 = out / "fp32.pt"
    torch.save(module.net.state_dict(), fp32)
    before, reference = _measure(cfg, job, "fp32", module.net, fp32, None)
    log.info(f"Applying compression={choices.get('compression')} ({type(recipe).__name__})")
    net = recipe.apply(job)
    after, _ = _measure(cfg, job, recipe.name, net, recipe.save(net, job), reference)
    fp32.unlink()  # the checkpoint holds these weights already; its size is in the table
    rows = [before, after]
    (out / "compression.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = markdown(rows) + "\n"
    (out / "compression.md").write_text(table)
    log.info("Compression table (also in compression.md):\n" + table)
    return {"rows": rows}, {"cfg": cfg, "module": module, "net": net, "datamodule": datamodule}


@hydra.main(version_base="1.3", config_path="configs", config_name="compress.yaml")
def main(cfg: DictConfig) -> None:
    compress(cfg)


if __name__ == "__main__":
    refuse_removed_options(sys.argv[1:])
    main()
