"""Makes a resumed run draw the same random numbers as an uninterrupted one."""

import random
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer


class RNGState(Callback):
    """Saves the torch (CPU and CUDA), Python and NumPy RNG states in each checkpoint and
    restores them at the start of the first epoch after resuming, after the sanity check, so
    shuffling, augmentation and dropout continue exactly where they stopped.

    Lightning does not checkpoint RNG states itself. All values are tensors or plain Python
    types, which ``torch.load(weights_only=True)`` accepts.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
