"""Model files, as nanoGPT keeps its checkpoints: the model's kind, its `model_args` (the few values
its class is built from, not the params.yaml sections they came from, so that a file outlives any key
added to params.yaml), a format version and the weights; written atomically.

Format 1, before the version was recorded, held the params.yaml sections whole ("args"); it is still
read, and each model class says how its format-1 args map onto today's (`upgrade`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from aevae import MissingModel, UserError
from aevae.files import atomic_path

FORMAT = 2


def save(path: str | Path, kind: str, model_args: dict, model: nn.Module) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    # Tuples as lists: the file holds plain data, as params.yaml writes it.
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in model_args.items()}
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "kind": kind, "model_args": args, "state_dict": state}, tmp)


def load(path: str | Path | BinaryIO, build: dict[str, Callable[[dict, int], nn.Module]],
         device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at `path` (or read from an open binary file), in eval mode on `device`. `build`
    maps each kind a caller accepts to a function that makes its untrained model from the file's
    model args and format. Raises MissingModel when there is no file."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingModel(path) from None
    kind, version = ckpt.get("kind"), ckpt.get("format", 1)
    if kind not in build:
        raise UserError(f"{path} holds a '{kind}' model; expected one of: {', '.join(build)}")
    if version not in (1, FORMAT):
        raise UserError(f"{path}: model file format {version!r} is not one this code reads (accepted: 1 to {FORMAT}); "
                        f"load it with the aevae that wrote it, or retrain it: dvc repro -f train_{kind}")
    model = build[kind](ckpt["model_args"] if version == FORMAT else ckpt["args"], version)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
