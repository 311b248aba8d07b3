"""The harness of every training stage: what it does around the trainer (aevae.train.fit), written
once. The process settings, the device and the seed first; then the DVCLive log, the resume
checkpoint, the time file, and a one-line error for a run that diverged. A stage script keeps only
its data, its model and what follows training:

    with harness.training("vae", p, "train", __file__) as run:
        ...load the data, build the model...
        run.fit(model, train, test, reads=[...])  # dvc.yaml's params of the stage
        ...finish the model and save it...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

from aevae import UserError, live, runtime
from aevae.config import Params
from aevae.files import write_json
from aevae.train import Diverged, checkpoint_for, fit


class Training:
    """A training stage under way: its params, device and log, and `fit`, which trains with the stage's
    settings."""

    def __init__(self, name: str, p: Params, cfg, device: torch.device, log: live.Log, script: str | Path):
        self.name, self.p, self.cfg, self.device, self.log, self.script = name, p, cfg, device, log, script
        self.checkpoint, self.seconds = None, 0.0

    def fit(self, model: torch.nn.Module, train: tuple[torch.Tensor, ...], test: tuple[torch.Tensor, ...],
            reads: list[str], transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            extra: Callable[[int], dict[str, float]] | None = None) -> dict[str, dict[str, float]]:
        """Train `model`, logging every epoch and resuming from the stage's checkpoint; the last epoch's
        means. `reads` are the params the stage reads, as dvc.yaml lists them (a section, or a section's
        key: "data.train_size"), whose values stamp the checkpoint; tests/test_harness.py checks the two
        lists agree. `extra(epoch)`: figures of each epoch that are no loss term (the KL's weight),
        logged beside them."""
        self.checkpoint = checkpoint_for(self.name, param_values(self.p, reads), self.script, self.device)
        log = (lambda e: self.log.epoch(e, extra(e.number))) if extra else self.log.epoch
        history = fit(model, train, test, self.cfg, self.device, transform, self.checkpoint, on_epoch=log)
        self.seconds = sum(e.seconds for e in history)
        return history[-1].means


def param_values(p: Params, keys: list[str]) -> dict:
    """The value of each of params.yaml's `keys` (dvc.yaml's form: "train", "data.train_size") in p."""
    out = {}
    for key in keys:
        value = p
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = asdict(value) if is_dataclass(value) else value
    return out


@contextmanager
def training(name: str, p: Params, section: str, script: str | Path) -> Iterator[Training]:
    """Training stage `name`, trained with params.yaml's `section` (train or classifier), logging into
    metrics/<name>/train/. The block loads the data, calls `run.fit` and writes the model: if it fails, the
    previous log and model stay (aevae.live.logger); once it has succeeded, the training time goes to
    metrics/<name>/time.json, which no stage reads, and the checkpoint is removed."""
    cfg = getattr(p, section)
    runtime.setup(pin=cfg.precision == "float32")
    device = runtime.resolve_device(cfg.device, f"{section}.device")
    runtime.warn_precision(cfg.precision, device, f"{section}.precision")
    torch.manual_seed(cfg.seed)  # Seeded before the block builds the model, so its initial weights follow the seed.
    try:
        with live.logger(f"metrics/{name}/train") as log:
            run = Training(name, p, cfg, device, log, script)
            yield run
            write_json(f"metrics/{name}/time.json", {"train_seconds": round(run.seconds, 2)})
        if run.checkpoint:
            run.checkpoint.remove()
    except Diverged as e:
        raise UserError(f"{e}; try a smaller {section}.lr (now {cfg.lr})") from None
