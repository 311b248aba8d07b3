"""Model files: the model's kind, its `config` (the frozen dataclass it is built from, by `asdict`)
and its weights; written atomically. A model class `cls` is rebuilt as `cls(cls.Config(**args))`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from aevae import MissingModel, UserError
from aevae.files import atomic_path


def save(model: nn.Module, kind: str, path: str | Path) -> None:
    # Tuples as lists: the file holds plain data, as params.yaml writes it.
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"kind": kind, "args": args, "state_dict": state}, tmp)


def load(path: str | Path | BinaryIO, kinds: dict[str, type], device: str | torch.device = "cpu") -> nn.Module:
    """The model saved at `path` (or read from an open binary file), in eval mode on `device`;
    `kinds` maps a saved kind to its class. Raises MissingModel when there is no file."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingModel(path) from None
    if ckpt["kind"] not in kinds:
        raise UserError(f"{path} holds a '{ckpt['kind']}' model; expected one of: {', '.join(kinds)}")
    cls = kinds[ckpt["kind"]]
    model = cls(cls.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["args"].items()}))
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
