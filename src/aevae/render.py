"""Figures: sample grids, reconstructions and loss curves, as PNGs that are the same bytes every run."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from aevae.files import atomic_path


def grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(N, 784) images in [0, 1] as one (H, W) grid with light separators."""
    return make_grid(images.view(-1, 1, 28, 28), nrow=nrow, padding=2, pad_value=0.5)[0]


def save(fig: Figure, path: str | Path) -> None:
    # No software/version stamp, so the same figure gives the same bytes.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})


def samples_figure(panels: dict[str, torch.Tensor]) -> Figure:
    """Image grids side by side, one titled panel each."""
    fig = Figure(figsize=(4.2 * len(panels), 4.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, images) in zip(axes[0], panels.items()):
        ax.imshow(grid(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    return fig


def reconstructions_figure(rows: dict[str, torch.Tensor]) -> Figure:
    """One row of images per entry (originals first), with the entry's name at the left."""
    n = len(next(iter(rows.values())))
    fig = Figure(figsize=(n * 0.6 + 1.2, len(rows) * 0.85 + 0.5))
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(grid(images, nrow=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Test images and their reconstructions", fontsize=11)
    fig.tight_layout()
    return fig


def losses_figure(curves: dict[str, list[dict]]) -> Figure:
    """Per-epoch train (dashed) and test (solid) curves: the training loss, and its reconstruction term."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    panels = [("loss", "Loss (objective) per image"), ("recon", "Reconstruction term per image")]
    for ax, (column, title) in zip(axes, panels):
        for (name, rows), color in zip(curves.items(), ["tab:blue", "tab:orange"]):
            epochs = [r["epoch"] for r in rows]
            ax.plot(epochs, [r[f"train_{column}"] for r in rows], "--", color=color, label=f"{name} train")
            ax.plot(epochs, [r[f"test_{column}"] for r in rows], "-o", ms=3, color=color, label=f"{name} test")
        ax.set(title=title, xlabel="epoch", ylabel="per-image loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
