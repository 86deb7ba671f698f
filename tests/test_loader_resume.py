"""Training loaders that resume mid-epoch: a loader's state taken after some batches and loaded
into a fresh one gives the rest of that epoch's batches, as the uninterrupted loader gives them."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from src.core.errors import CheckpointError
from src.data.classification import ClassificationDataModule

DIGITS = {"tasks": ["classification"], "image_shape": [1, 8, 8], "num_classes": 10}


def train_loader(world: int = 1, rank: int = 0, **kwargs):
    dm = ClassificationDataModule("digits", DIGITS, batch_size=64 * world, **kwargs)
    if world > 1:
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    dm.setup()
    return dm.train_dataloader()


def epoch(loader, epoch_number: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if hasattr(loader.sampler, "set_epoch"):  # as Lightning does at each epoch start
        loader.sampler.set_epoch(epoch_number)
    return list(loader)


@pytest.mark.parametrize(("world", "augment"), [(1, "crop_flip"), (2, "none"), (2, "crop")],
                         ids=["one process, augmented", "2 processes", "2 processes, augmented"])
def test_a_loader_resumed_mid_epoch_serves_the_rest_of_that_epoch(world: int, augment: str) -> None:
    """Every process of ``world`` stops after 5 batches of epoch 1; its state (rank 0's order where
    the sampler redraws its own) restores the remaining batches, augmentation included (the global
    RNG restored as RNGState does), then later epochs as before."""
    for rank in range(world):
        torch.manual_seed(0)
        reference = train_loader(world, rank, augment=augment)
        epoch(reference, 0)
        state_before = torch.get_rng_state()
        uninterrupted = epoch(reference, 1)
        next_epoch = epoch(reference, 2)

        torch.set_rng_state(state_before)
        stopped = train_loader(world, rank, augment=augment)
        stopped.sampler.set_epoch(1) if world > 1 else None
        batches = iter(stopped)
        served = [next(batches) for _ in range(5)]
        state, rng = stopped.state_dict(), torch.get_rng_state()
        assert ("order" in state) == (world == 1)  # a DistributedSampler redraws its order

        resumed = train_loader(world, rank, augment=augment)
        resumed.load_state_dict(state)
        torch.set_rng_state(rng)
        rest = epoch(resumed, 1)
        assert len(served) + len(rest) == len(uninterrupted) == len(resumed)
        for (x, y), (x_ref, y_ref) in zip(served + rest, uninterrupted):
            assert torch.equal(y, y_ref) and torch.equal(x, x_ref)
        later = epoch(resumed, 2)  # the restored state is used once
        assert len(later) == len(next_epoch) and all(torch.equal(y, y_ref) for (_, y), (_, y_ref) in zip(later, next_epoch))


def test_a_state_whose_epoch_had_ended_is_not_carried_into_the_next() -> None:
    """Lightning loads the state of a checkpoint saved after an epoch's last batch, creates the
    iterator, then draws nothing from it: the next epoch's iterator starts afresh."""
    loader = train_loader()
    state = (list(loader), loader.state_dict())[1]
    resumed = train_loader()
    resumed.load_state_dict(state)
    iter(resumed)  # the resumed epoch's iterator, never drawn from
    assert len(list(resumed)) == len(resumed)


def test_a_state_of_other_data_is_one_line() -> None:
    loader = train_loader()
    next(iter(loader))
    other = train_loader(label_fraction=0.5)
    other.load_state_dict(loader.state_dict())
    with pytest.raises(CheckpointError, match="in an epoch of 1293 examples, this run's has 645; resume with the data"):
        list(other)
