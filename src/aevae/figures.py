"""Figures: sample grids, reconstructions and loss curves, as PNGs that are the same bytes every run.

Models come in through the Autoencoder interface (aevae.model) and are used without gradients."""

from __future__ import annotations

from itertools import cycle
from pathlib import Path

import pandas as pd
import torch
from matplotlib.colors import TABLEAU_COLORS
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torchvision.utils import make_grid

from aevae import atomic_path
from aevae.classifier import eigh


def interpolate(model, a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode `steps` points on the straight line between the codes (VAE: posterior means) of images a and b."""
    za, zb = model.code(torch.stack([a, b]))
    t = torch.linspace(0, 1, steps, device=za.device)[:, None]
    return model.decode((1 - t) * za + t * zb)


def manifold_grid(n: int) -> torch.Tensor:
    """The n values per axis of Kingma & Welling's (2013) Fig. 4: an even grid on the open unit interval
    (the inverse CDF is infinite at 0 and 1) through the inverse Gaussian CDF."""
    return torch.special.ndtri(torch.linspace(0, 1, n + 2)[1:-1])


def manifold(model, n: int) -> torch.Tensor:
    """The n x n grid of manifold_grid decoded; rows run from large z2 at the top to small at the
    bottom, like a plot's axes."""
    z = manifold_grid(n).to(next(model.parameters()).device)
    z1, z2 = torch.meshgrid(z, z.flip(0), indexing="xy")
    return model.decode(torch.stack([z1.flatten(), z2.flatten()], 1))


def project_2d(z: torch.Tensor) -> torch.Tensor:
    """The codes themselves when 2-D, else their first two principal components: the top eigenvectors of
    their covariance, from the project's eigensolver (aevae.classifier.eigh, the Frechet distance's), which gives the same bytes on
    every CPU, where LAPACK's SVD does not. Each sign is set so that the component's largest entry is
    positive, as an eigensolver leaves it to chance."""
    if z.shape[1] == 2:
        return z
    z = z - z.mean(0)
    vals, vecs = eigh(z.double().T @ z.double())
    top = vecs[:, vals.argsort(descending=True)[:2]]
    top = top * top.gather(0, top.abs().argmax(0, keepdim=True)).sign()
    return z @ top.float()


def grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(N, 784) images in [0, 1] as one (H, W) grid with light separators."""
    return make_grid(images.cpu().view(-1, 1, 28, 28), nrow=nrow, padding=2, pad_value=0.5)[0]


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


def rows_figure(rows: dict[str, torch.Tensor], title: str) -> Figure:
    """One row of images per entry, with the entry's name at the left."""
    n = len(next(iter(rows.values())))
    fig = Figure(figsize=(n * 0.6 + 1.6, len(rows) * 0.8 + 0.6))
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, (name, images) in zip(axes[:, 0], rows.items()):
        ax.imshow(grid(images, nrow=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def manifold_figure(images: torch.Tensor, n: int, name: str) -> Figure:
    """An n x n grid of decoded images, laid out like the latent grid they came from."""
    fig = Figure(figsize=(7.5, 8))
    ax = fig.subplots()
    ax.imshow(grid(images, nrow=n), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{name}, z = 2: the learned manifold\n(a grid on the unit square through the Gaussian's inverse CDF)",
                 fontsize=11)
    ax.set(xlabel="z1", ylabel="z2")
    z = manifold_grid(n)
    every = range(0, n, max(1, n // 5))
    centres = [2 + 30 * i + 14 for i in every]  # tiles of 28 pixels, 2 of padding (see grid)
    ax.set_xticks(centres, [f"{z[i]:.2f}" for i in every])
    ax.set_yticks(centres, [f"{z.flip(0)[i]:.2f}" for i in every])
    fig.tight_layout()
    return fig


def latent_figure(panels: dict[str, tuple[torch.Tensor, torch.Tensor]], title: str, axis: str) -> Figure:
    """Side-by-side scatters of 2-D points coloured by digit; `axis` names the coordinates (e.g. "PC")."""
    fig = Figure(figsize=(12, 5.4), layout="constrained")
    fig.suptitle(title, fontsize=12)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, (points, labels)) in zip(axes, panels.items()):
        points, labels = points.cpu(), labels.cpu()
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=3,
                             alpha=0.6, linewidths=0, rasterized=True)
        ax.set(title=name, xlabel=f"{axis} 1", ylabel=f"{axis} 2")
        ax.grid(alpha=0.3)
    fig.colorbar(scatter, ax=axes.tolist(), ticks=range(10), label="digit")
    return fig


def read_curves(folder: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """The per-epoch curves a training stage logged into `folder` (aevae.trainer's DVCLive log), as
    {"<split>/<term>": (steps, values)}, e.g. "test/loss"."""
    curves = {}
    for path in sorted(Path(folder, "plots/metrics").glob("*/*.tsv")):
        table = pd.read_csv(path, sep="\t")  # pandas 3 parses each float exactly as DVCLive wrote it
        curves[f"{path.parent.name}/{path.stem}"] = (table["step"].tolist(), table[path.stem].tolist())
    return curves


def losses_figure(curves: dict[str, dict[str, tuple[list[int], list[float]]]]) -> Figure:
    """Per-epoch train (dashed) and test (solid) curves of each model (`read_curves`): the
    objective, and its two terms apart."""
    fig = Figure(figsize=(15, 4.2))
    axes = fig.subplots(1, 3)
    panels = [("loss", "Objective per image"), ("recon", "Reconstruction term per image"), ("kl", "KL term per image")]
    for ax, (term, title) in zip(axes, panels):
        for (name, model_curves), color in zip(curves.items(), cycle(TABLEAU_COLORS)):  # any number of models
            if term == "kl" and not any(model_curves["train/kl"][1]):
                continue  # the AE has no KL term
            ax.plot(*model_curves[f"train/{term}"], "--", color=color, label=f"{name} train")
            ax.plot(*model_curves[f"test/{term}"], "-o", ms=3, color=color, label=f"{name} test")
        ax.set(title=title, xlabel="epoch", ylabel="nats" if term == "kl" else "per-image loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig
