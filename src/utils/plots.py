"""Figures logged at test time: a PNG in the run dir for any logger, and an image in W&B or
TensorBoard when those loggers are on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from matplotlib.figure import Figure


def confusion_matrix_figure(matrix: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (rows: true class), with raw counts in the cells."""
    n = len(class_names)
    fig = Figure(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), layout="constrained")
    ax = fig.add_subplot()
    norm = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig


def prediction_grid_figure(
    images: torch.Tensor, targets: torch.Tensor, preds: torch.Tensor, class_names: Sequence[str], cols: int = 8
) -> Figure:
    """Test images titled ``pred (true)``, wrong predictions in red."""
    rows = (len(images) + cols - 1) // cols
    fig = Figure(figsize=(1.4 * cols, 1.6 * rows), layout="constrained")
    for k, (img, t, p) in enumerate(zip(images, targets, preds)):
        ax = fig.add_subplot(rows, cols, k + 1)
        img = (img - img.min()) / (img.max() - img.min()).clamp(min=1e-8)  # undo normalisation for display
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray")
        ax.set_title(f"{class_names[p]} ({class_names[t]})", fontsize=8, color="black" if p == t else "red")
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
