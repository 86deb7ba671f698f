"""A trained model answering a user's rows: what predict.py and serve.py share on top of the one
session builder (src/session.py, mode ``predict``).

The checkpoint's task decides what a row holds (src/data/inputs.py: an image, an article, an image
and a question, a label to sample); its DataModule encodes each row as its test loader would, and
its task module's ``predict_step`` answers a batch. A row that cannot be encoded (an unreadable
image, an empty article) gets an ``error`` instead of an answer; the others are still answered.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning import LightningDataModule
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch.utils.data import DataLoader

from src.compression.export import OnnxNet
from src.core.errors import ConfigError
from src.data.inputs import InputError, ReadsInputs
from src.models.base import LabelTaskModule, TaskModule
from src.models.nets import decoding
from src.models.summarization import SummarizationModule
from src.session import Session

#: encoded inputs held at once: predict.py reads a folder of any size a slice at a time
CHUNK_BATCHES = 64
BACKENDS = ("torch", "onnx")


@runtime_checkable
class TakesTokenizer(Protocol):
    """A task module that encodes and decodes text with its datamodule's tokenizer."""

    def take_tokenizer(self, datamodule: LightningDataModule) -> None: ...


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start: start + size]


class Predictor:
    """Rows in, one answer (or ``error``) per row out, in order, in batches of ``batch_size``.

    ``top_k``: labels listed per answer (classification, VQA). ``decoding``: overrides of a
    summarizer's test-time ``generation`` settings (``beam_size``, ``max_len``...). ``backend=onnx``
    runs the ONNX file compress.py wrote (``artifact``) in place of the net."""

    def __init__(self, session: Session, batch_size: int = 32, top_k: int = 5,
                 decoding_overrides: Mapping[str, Any] | None = None, backend: str = "torch",
                 artifact: str | None = None) -> None:
        self.session, self.batch_size = session, batch_size
        datamodule, module = self.datamodule, self.module = session.datamodule, session.module
        # serve.py answers batches itself (no predict loop per request) on the trainer's device and precision
        self.device, self.precision = session.trainer.strategy.root_device, session.trainer.precision_plugin
        if not isinstance(datamodule, ReadsInputs):
            model = session.choices.get("model", session.cfg.model._target_)
            raise ConfigError(f"model={model} ({session.cfg.task.name}) has no predict path; predict.py "
                              "answers classification, summarization, vqa and generation checkpoints")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a positive whole number")
        self.kind = datamodule.input_kind
        datamodule.prepare_inputs()
        if isinstance(module, TakesTokenizer):
            module.take_tokenizer(datamodule)
        if isinstance(module, LabelTaskModule):
            if not isinstance(top_k, int) or top_k < 1:
                raise ConfigError(f"top_k={top_k!r} must be a positive whole number")
            module.predict_top_k = top_k
        self._decoding(module, {k: v for k, v in (decoding_overrides or {}).items() if v is not None})
        self._backend(module, backend, artifact)
        self.collate = datamodule.input_collate()
        module.eval().to(self.device)
        if isinstance(module, TaskModule) and module.compile_net and backend == "torch":  # model.compile=true
            module.net.compile()

    def _decoding(self, module: Any, overrides: dict[str, Any]) -> None:
        if not overrides:
            return
        if not isinstance(module, SummarizationModule):
            raise ConfigError(f"decoding.* applies to summarization checkpoints; this one is a "
                              f"{self.session.cfg.task.name} checkpoint: drop {', '.join(overrides)}")
        known = [p for p in inspect.signature(decoding.generate).parameters if p not in ("net", "source")]
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise ConfigError(f"decoding.{unknown[0]} is not a decoding setting; use {', '.join(known)}")
        module.generation["test"].update(overrides)

    def _backend(self, module: Any, backend: str, artifact: str | None) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r} is not one of {', '.join(BACKENDS)}")
        if backend == "onnx":
            if not artifact or not Path(artifact).is_file():
                raise ConfigError(f"backend=onnx needs artifact=<compress run>/net.onnx (compress.py compression=onnx); "
                                  f"{artifact or 'none'} is not a file")
            module.net = OnnxNet(Path(artifact))

    def __getstate__(self) -> dict[str, Any]:
        """serve.py hands the predictor to its inference worker: everything but the session
        (its trainer does not pickle), which only predict.py's loop needs."""
        return {k: v for k, v in self.__dict__.items() if k != "session"}

    def encode(self, row: Mapping[str, Any]) -> Any:
        """One row as one loader item; :class:`InputError` when the model cannot take it."""
        return self.datamodule.encode(row)

    def forward(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """serve.py: one batch of encoded items answered directly, as the predict loop would."""
        batch = move_data_to_device(self.collate(list(items)), self.device)
        with torch.inference_mode(), self.precision.forward_context():
            return self.module.predict_step(batch, 0)

    def answer(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """One dict per row: the task module's answer, or ``{"error": why}``."""
        encoded: list[tuple[int, Any]] = []
        out: list[dict[str, Any]] = [{} for _ in rows]
        for i, row in enumerate(rows):
            try:
                encoded.append((i, self.encode(row)))
            except InputError as e:
                out[i] = {"error": str(e)}
        # a generator numbers its sample files within one predict loop: one loop for all of them
        size = len(encoded) if self.kind == "labels" else self.batch_size * CHUNK_BATCHES
        for chunk in _chunks(encoded, max(size, 1)):
            for (i, _), answer in zip(chunk, self.predict_items([item for _, item in chunk])):
                out[i] = answer
        return out

    def predict_items(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Encoded items through the trainer's predict loop (device, precision, eval mode)."""
        loader = DataLoader(list(items), batch_size=self.batch_size, shuffle=False, collate_fn=self.collate)
        batches = self.session.trainer.predict(self.session.module, dataloaders=loader)
        return [answer for batch in batches for answer in batch]
