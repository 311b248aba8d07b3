"""One training loop for any model whose `loss(*batch)` returns a NamedTuple of loss terms summed
over the batch, the first of them the objective; it knows nothing else about the model, nor
about logging: it yields each epoch's figures, and the stages log them (aevae.live).

Speed comes from keeping the whole dataset in one tensor on the device, batching by
indexing it (no DataLoader, no per-sample transforms), a fused optimiser step, and
summing the loss terms on the device so that an epoch never waits on the host
(and from the process settings of aevae.runtime, which the stages make).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from tqdm import tqdm

from aevae.config import Train


class Epoch(NamedTuple):
    number: int
    figures: dict[str, dict[str, float]]  # {"train": {term: mean}, "test": {term: mean}}, the model's loss terms
    seconds: float  # wall time of the training pass: the one figure that differs between runs


class Diverged(Exception):
    """The loss stopped being a finite number; the message says where."""


def fit(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, ...],
    test: tuple[torch.Tensor, ...],
    cfg: Train,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[Epoch]:
    """Train with AdamW on (inputs, *targets) tensors; `transform` maps each training batch's inputs.
    The model's `loss(*batch, epoch=...)` is told the epoch (from 1), for objectives that change in training.

    Yields an Epoch as each epoch ends.
    Randomness (init aside) comes from torch's global generators: seed them before building the model.
    Raises Diverged when a loss stops being finite.
    """
    model.to(device)
    train = tuple(t.to(device) for t in train)
    test = tuple(t.to(device) for t in test)
    n = len(train[0])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    # bf16: matmuls and convolutions in bfloat16, the weights, the optimiser and the loss in float32.
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=cfg.precision == "bf16")
    epochs = tqdm(range(1, cfg.epochs + 1), desc=type(model).__name__, unit="epoch")
    for epoch in epochs:
        model.train()
        start = time.perf_counter()
        batches = torch.randperm(n, device=device).split(cfg.batch_size)
        steps = None  # each step's loss terms, on the device, read once per epoch
        for step, idx in enumerate(tqdm(batches, desc=f"epoch {epoch}", unit="batch", leave=False)):
            x, *targets = (t[idx] for t in train)
            with autocast:
                terms = model.loss(transform(x) if transform else x, *targets, epoch=epoch)
            opt.zero_grad(set_to_none=True)
            terms[0].backward()
            opt.step()
            with torch.no_grad():
                if steps is None:
                    steps = torch.empty(len(batches), len(terms), device=device)
                steps[step] = torch.stack(terms)
        train_means = (steps.sum(0) / n).tolist()  # the epoch's one host sync
        seconds = time.perf_counter() - start
        if not all(map(math.isfinite, train_means)):
            step = int((~steps.isfinite().all(1)).nonzero()[0]) + 1
            raise Diverged(f"training diverged in epoch {epoch}, step {step} of {len(batches)}: the loss became "
                           f"{steps[step - 1, 0].item()}")
        test_means = mean_losses(model, test, epoch)
        if not all(map(math.isfinite, test_means)):
            raise Diverged(f"the test loss became {test_means[0]} after epoch {epoch}")
        epochs.set_postfix(train=f"{train_means[0]:.3f}", test=f"{test_means[0]:.3f}")
        figures = {"train": dict(zip(terms._fields, train_means)), "test": dict(zip(terms._fields, test_means))}
        yield Epoch(epoch, figures, seconds)


@torch.no_grad()
def mean_losses(model: torch.nn.Module, data: tuple[torch.Tensor, ...], epoch: int | None = None,
                batch_size: int = 2000) -> list[float]:
    """Per-example means of the model's loss terms over data, in eval mode (the objective of `epoch`)."""
    model.eval()
    sums = 0
    for batch in zip(*(t.split(batch_size) for t in data)):
        sums = sums + torch.stack(model.loss(*batch, epoch=epoch))
    return (sums / len(data[0])).tolist()
