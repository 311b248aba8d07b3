"""Model files: the model's kind, the arguments that rebuild it, and its weights; written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from aevae import UserError
from aevae.files import atomic_path


def save(model: nn.Module, kind: str, path: str | Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"kind": kind, "args": model.args, "state_dict": state}, tmp)


def load(path: str | Path | BinaryIO, kinds: dict[str, type], device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at `path` (or read from an open binary file), in eval mode on `device`;
    `kinds` maps a saved kind to its class."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        # Each models/<kind>.pt is made by the stage train_<kind> (dvc.yaml).
        raise UserError(f"{path}: not found; train it first: dvc repro train_{Path(path).stem}") from None
    if ckpt["kind"] not in kinds:
        raise UserError(f"{path} holds a '{ckpt['kind']}' model; expected one of: {', '.join(kinds)}")
    model = kinds[ckpt["kind"]](**ckpt["args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
