"""One training loop for any model that has `loss(x) -> Losses`; it knows nothing else about the model.

Speed comes from keeping the whole dataset in one tensor on the device, batching by
indexing it (no DataLoader, no per-sample transforms), a fused optimiser step, and
summing the loss terms on the device so that an epoch never waits on the host.
"""

from __future__ import annotations

import math
import time
import torch
from tqdm import tqdm

from aevae import UserError
from aevae.config import Train

# Adam's moment estimates for rarely-lit pixels decay geometrically into the denormal range
# after ~800 steps, where x86 float arithmetic crawls: epochs got 1.8x slower from then on.
# Flushing them to zero changes no figure we report. It must be set before torch starts its
# worker threads, which copy this thread's float mode when they start: hence at import.
torch.set_flush_denormal(True)

COLUMNS = ["epoch", "train_loss", "test_loss", "train_recon", "test_recon", "train_kl", "test_kl", "seconds"]


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = 'cuda' but no CUDA GPU is available here; accepted: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def fit(model: torch.nn.Module, train_x: torch.Tensor, test_x: torch.Tensor, cfg: Train, device: torch.device):
    """Train with AdamW; return one row of per-image mean losses per epoch (see COLUMNS).

    Randomness (init aside) comes from torch's global generators: seed them before building the model.
    """
    model.to(device)
    train_x, test_x = train_x.to(device), test_x.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    rows = []
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start = time.perf_counter()
        batches = torch.randperm(len(train_x), device=device).split(cfg.batch_size)
        steps = torch.empty(len(batches), 3, device=device)  # each step's loss terms, read once per epoch
        name = f"{type(model).__name__} epoch {epoch}/{cfg.epochs}"
        for step, idx in enumerate(tqdm(batches, desc=name, unit="batch", leave=False)):
            terms = model.loss(train_x[idx])
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
            with torch.no_grad():
                steps[step] = torch.stack(terms)
        train = (steps.sum(0) / len(train_x)).tolist()  # the epoch's one host sync
        seconds = time.perf_counter() - start
        if not all(map(math.isfinite, train)):
            step = int((~steps.isfinite().all(1)).nonzero()[0]) + 1
            raise UserError(
                f"training diverged in epoch {epoch}, step {step} of {len(batches)}: the loss became "
                f"{steps[step - 1, 0].item()}; try a smaller train.lr (now {cfg.lr})"
            )
        test = mean_losses(model, test_x)
        if not all(map(math.isfinite, test)):
            raise UserError(f"the test loss became {test[0]} after epoch {epoch}; try a smaller train.lr (now {cfg.lr})")
        rows.append(dict(zip(COLUMNS, [epoch, train[0], test[0], train[1], test[1], train[2], test[2], seconds])))
        print(f"{name}: train loss {train[0]:.3f}, test loss {test[0]:.3f}, {seconds:.1f} s", flush=True)
    return rows


@torch.no_grad()
def mean_losses(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 2000) -> list[float]:
    """Per-image means of (loss, recon, kl) over x, in eval mode."""
    model.eval()
    sums = torch.zeros(3, device=x.device)
    for xb in x.split(batch_size):
        sums += torch.stack(model.loss(xb))
    return (sums / len(x)).tolist()


def summary(rows: list[dict]) -> dict:
    """The final epoch's figures and the total training time, for metrics/<model>.json."""
    last = {k: v for k, v in rows[-1].items() if k not in ("epoch", "seconds")}
    return {"epochs": len(rows), **last, "train_seconds": round(sum(r["seconds"] for r in rows), 2)}
