"""Makes a resumed run draw the same random numbers as an uninterrupted one."""

import random
from typing import Any

import numpy as np
import torch
from lightning import Callback


class RNGState(Callback):
    """Saves the torch (CPU and CUDA), Python and NumPy RNG states in each checkpoint and
    restores them on resume, so shuffling, augmentation and dropout continue exactly where they
    stopped.

    Lightning does not checkpoint RNG states itself. Restoring happens while the checkpoint is
    loaded: before the resumed fit creates its train iterator (whose sampler seeds itself from
    the global RNG), and the sanity check in between runs under Lightning's ``isolate_rng``.
    All values are tensors or plain Python types, which ``torch.load(weights_only=True)`` accepts.
    """

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
