"""The recipes of ``configs/compression/``: each takes a trained task module and returns the
compressed net to evaluate, and writes it as an artifact. They act on ``module.net`` only, so the
task module's test loop measures every variant the same way."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningDataModule, Trainer
from torch import nn

from src.compression.export import OnnxNet, export
from src.compression.pruning import MagnitudePruning, prune_once
from src.compression.quantization import dynamic_int8, static_int8
from src.compression.structured import prune_channels
from src.core.errors import ConfigError
from src.models.base import TaskModule


@dataclass
class Job:
    """What a recipe works on: the trained module (weights loaded), its data, a function that
    fine-tunes the module for some epochs with extra callbacks (returning its trainer), and
    the net's inputs for a batch of ``n`` test examples."""

    module: TaskModule
    datamodule: LightningDataModule
    finetune: Callable[[int, list[Callback]], Trainer]
    examples: Callable[[int], tuple[Any, ...]]
    out_dir: Path


class Recipe:
    """A compression method: ``apply`` returns the net to evaluate, ``save`` writes it."""

    #: the tasks whose nets take a batch's tensors and return logits (compress.py checks this)
    tasks: tuple[str, ...] = ("classification", "vqa")
    name = "recipe"

    def apply(self, job: Job) -> nn.Module:
        raise NotImplementedError

    def save(self, net: nn.Module, job: Job) -> Path:
        """The net's state_dict (int8 tensors for quantized nets), the file whose size is reported."""
        path = job.out_dir / f"{self.name}.pt"
        torch.save(net.state_dict(), path)
        return path


def _check_epochs(epochs: int) -> None:
    if epochs < 0:
        raise ConfigError(f"compression.finetune_epochs={epochs} must be >= 0")


class Prune(Recipe):
    """Global L1 magnitude pruning to ``sparsity`` (Han et al. 2015): through
    :class:`~src.compression.pruning.MagnitudePruning` while fine-tuning for ``finetune_epochs``
    (sparsity raised over the first half, the second half recovers), or in one shot with 0
    epochs. Also writes ``<name>.ckpt``, a checkpoint ``eval.py`` reads like any other."""

    def __init__(self, sparsity: float = 0.9, finetune_epochs: int = 2, layer_types: Sequence[str] = ("Conv2d", "Linear"),
                 exclude: Sequence[str] = (), lottery_ticket: bool = False) -> None:
        _check_epochs(finetune_epochs)
        self.callback = MagnitudePruning(sparsity, 0.0, 0.5, layer_types, exclude, lottery_ticket)
        self.sparsity, self.epochs = sparsity, finetune_epochs
        self.layer_types, self.exclude = tuple(layer_types), tuple(exclude)
        self.name = f"pruned_{round(sparsity * 100)}"
        self.trainer: Trainer | None = None

    def apply(self, job: Job) -> nn.Module:
        if self.epochs:
            self.trainer = job.finetune(self.epochs, [self.callback])  # masks made permanent when it ends
        else:
            prune_once(job.module.net, self.sparsity, self.layer_types, self.exclude)
        return job.module.net

    def save(self, net: nn.Module, job: Job) -> Path:
        if self.trainer is not None:
            self.trainer.save_checkpoint(job.out_dir / f"{self.name}.ckpt", weights_only=True)
        return super().save(net, job)


class Structured(Recipe):
    """Remove ``ratio`` of every layer's channels (torch-pruning), then fine-tune. The artifact
    loads into an unpruned net with :func:`src.compression.structured.load_resized`."""

    def __init__(self, ratio: float = 0.5, finetune_epochs: int = 2, ignore: Sequence[str] = ()) -> None:
        if not 0.0 < ratio < 1.0:
            raise ConfigError(f"compression.ratio={ratio} must be in (0, 1)")
        _check_epochs(finetune_epochs)
        self.ratio, self.epochs, self.ignore = ratio, finetune_epochs, tuple(ignore)
        self.name = f"structured_{round(ratio * 100)}"

    def apply(self, job: Job) -> nn.Module:
        prune_channels(job.module.net, job.examples(2), self.ratio, self.ignore)
        if self.epochs:
            job.finetune(self.epochs, [])
        return job.module.net


class DynamicInt8(Recipe):
    """int8 weights for ``layer_types``, activations quantized per batch at run time."""

    name = "int8_dynamic"

    def __init__(self, layer_types: Sequence[str] = ("Linear", "LSTM", "GRU")) -> None:
        self.layer_types = tuple(layer_types)

    def apply(self, job: Job) -> nn.Module:
        return dynamic_int8(job.module.net, self.layer_types)


class StaticInt8(Recipe):
    """int8 weights and activations for ``submodule`` (the whole net by default), with
    activation ranges calibrated on ``calibration_batches`` training batches."""

    name = "int8_static"

    def __init__(self, calibration_batches: int = 32, submodule: str | None = None, backend: str = "x86") -> None:
        if calibration_batches < 1:
            raise ConfigError(f"compression.calibration_batches={calibration_batches} must be >= 1")
        supported = torch.backends.quantized.supported_engines
        if backend not in supported:
            raise ConfigError(f"compression.backend={backend} is not available here; choose one of {', '.join(supported)}")
        self.batches, self.submodule, self.backend = calibration_batches, submodule, backend

    def apply(self, job: Job) -> nn.Module:
        net = job.module.net
        if self.submodule:
            try:
                net.get_submodule(self.submodule)
            except AttributeError as e:
                names = ", ".join(n for n, _ in net.named_children())
                raise ConfigError(f"compression.submodule={self.submodule} is not in {type(net).__name__} "
                                  f"(its parts: {names})") from e
        job.datamodule.setup("fit")
        batches = [job.module.net_inputs(b) for b in itertools.islice(job.datamodule.train_dataloader(), self.batches)]
        return static_int8(net, batches, self.submodule, self.backend)


class Onnx(Recipe):
    """``torch.export`` program (``net.pt2``) and ONNX file (``net.onnx``), evaluated with onnxruntime."""

    name = "onnx"

    def __init__(self, opset: int = 18) -> None:
        self.opset = opset

    def apply(self, job: Job) -> nn.Module:
        _, path = export(copy.deepcopy(job.module.net), job.examples(2), job.out_dir, self.opset)
        return OnnxNet(path)

    def save(self, net: nn.Module, job: Job) -> Path:
        return net.path
