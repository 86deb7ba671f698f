"""Figures of a run (prediction grids, GAN sample grids), and logging them: a PNG in the run dir
for any logger, and an image in W&B or TensorBoard when those loggers are on."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure
from torchvision.utils import make_grid


def sample_grid_figure(images: torch.Tensor, nrow: int = 8) -> Figure:
    """Generator images in [-1, 1] as one grid, without axes."""
    grid = make_grid(images.float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1), pad_value=1.0)
    fig = Figure(figsize=(6, 6 * grid.shape[1] / grid.shape[2]), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.axis("off")
    return fig


def prediction_grid_figure(
    images: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor, class_names: Sequence[str], cols: int = 8,
    captions: Sequence[str] | None = None,
) -> Figure:
    """Test images titled ``pred (true)``, wrong predictions in red; ``captions`` (e.g. the
    question asked about each image) go above the title."""
    rows = (len(images) + cols - 1) // cols
    height = 1.6 if captions is None else 2.0
    fig = Figure(figsize=(1.4 * cols if captions is None else 2.2 * cols, height * rows), layout="constrained")
    for k, (img, t, p) in enumerate(zip(images, targets, preds)):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)  # undo normalisation for display
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
        title = f"{class_names[p]} ({class_names[t]})"
        if captions is not None:
            title = f"{textwrap.fill(captions[k], 28)}\n{title}"
        ax.set_title(title, fontsize=8 if captions is None else 7, color="black" if p == t else "red")
        ax.axis("off")
    return fig


def log_figure(loggers: Sequence[Logger], key: str, fig: Figure, png_path: Path) -> None:
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[str(png_path)])
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(key, fig)
