"""One training loop for any model whose `loss(*batch)` returns a NamedTuple of loss terms summed
over the batch, the first of them the objective; it knows nothing else about the model.

Speed comes from keeping the whole dataset in one tensor on the device, batching by
indexing it (no DataLoader, no per-sample transforms), a fused optimiser step, and
summing the loss terms on the device so that an epoch never waits on the host.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import torch
from tqdm import tqdm

from aevae import UserError
from aevae.config import Train

# Adam's moment estimates for rarely-lit pixels decay geometrically into the denormal range
# after ~800 steps, where x86 float arithmetic crawls: epochs got 1.8x slower from then on.
# Flushing them to zero changes no figure we report. It must be set before torch starts its
# worker threads, which copy this thread's float mode when they start: hence at import.
torch.set_flush_denormal(True)


def resolve_device(name: str, key: str = "train.device") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key} = 'cuda' but no CUDA GPU is available here; accepted: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def fit(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, ...],
    test: tuple[torch.Tensor, ...],
    cfg: Train,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    section: str = "train",
) -> list[dict]:
    """Train with AdamW on (inputs, *targets) tensors; `transform` maps each training batch's inputs.

    Returns a row per epoch: `epoch`, then `train_<term>` and `test_<term>` for each of the model's
    loss terms (per-example means), then `seconds`, the wall time of the epoch's training pass.
    Randomness (init aside) comes from torch's global generators: seed them before building the model.
    `section` is where cfg came from in params.yaml, for the error messages.
    """
    model.to(device)
    train = tuple(t.to(device) for t in train)
    test = tuple(t.to(device) for t in test)
    n = len(train[0])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        batches = torch.randperm(n, device=device).split(cfg.batch_size)
        steps = None  # each step's loss terms, on the device, read once per epoch
        name = f"{type(model).__name__} epoch {epoch}/{cfg.epochs}"
        for step, idx in enumerate(tqdm(batches, desc=name, unit="batch", leave=False)):
            x, *targets = (t[idx] for t in train)
            terms = model.loss(transform(x) if transform else x, *targets)
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
            raise UserError(
                f"training diverged in epoch {epoch}, step {step} of {len(batches)}: the loss became "
                f"{steps[step - 1, 0].item()}; try a smaller {section}.lr (now {cfg.lr})"
            )
        test_means = mean_losses(model, test)
        if not all(map(math.isfinite, test_means)):
            raise UserError(
                f"the test loss became {test_means[0]} after epoch {epoch}; try a smaller {section}.lr (now {cfg.lr})"
            )
        row = {"epoch": epoch}
        for term, tr, te in zip(terms._fields, train_means, test_means):
            row |= {f"train_{term}": tr, f"test_{term}": te}
        rows.append(row | {"seconds": seconds})
        print(f"{name}: train {terms._fields[0]} {train_means[0]:.3f}, test {test_means[0]:.3f}, {seconds:.1f} s",
              flush=True)
    return rows


@torch.no_grad()
def mean_losses(model: torch.nn.Module, data: tuple[torch.Tensor, ...], batch_size: int = 2000) -> list[float]:
    """Per-example means of the model's loss terms over data, in eval mode."""
    model.eval()
    sums = 0
    for batch in zip(*(t.split(batch_size) for t in data)):
        sums = sums + torch.stack(model.loss(*batch))
    return (sums / len(data[0])).tolist()


def summary(rows: list[dict]) -> dict:
    """The final epoch's figures and the total training time, for metrics/<model>.json."""
    last = {k: v for k, v in rows[-1].items() if k not in ("epoch", "seconds")}
    if "test_error" in last:
        last["test_accuracy"] = 1 - last["test_error"]
    return {"epochs": len(rows), **last, "train_seconds": round(sum(r["seconds"] for r in rows), 2)}
