"""A logger that is silent on non-zero ranks, so a DDP run prints each line once."""

import logging
from collections.abc import Mapping

from lightning.pytorch.utilities import rank_zero_only


class RankedLogger(logging.LoggerAdapter):
    """``logging.Logger`` that only emits on global rank 0 unless ``rank_zero_only=False``."""

    def __init__(self, name: str = __name__, rank_zero_only: bool = True, extra: Mapping | None = None) -> None:
        super().__init__(logger=logging.getLogger(name), extra=extra)
        self.rank_zero_only = rank_zero_only

    def log(self, level: int, msg: str, *args, **kwargs) -> None:
        if not self.isEnabledFor(level):
            return
        rank = getattr(rank_zero_only, "rank", 0)
        if self.rank_zero_only and rank != 0:
            return
        msg, kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg if self.rank_zero_only else f"[rank: {rank}] {msg}", *args, **kwargs)
