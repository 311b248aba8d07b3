"""Training: one loop for every model (`fit`), its resume checkpoint, its DVCLive log, and `stage`, what
every training stage does around it.

The loop trains any model whose `loss(*batch)` returns a NamedTuple of loss terms summed over the
batch, the first of them the objective; it knows nothing else about the model. Speed comes from
keeping the whole dataset in one tensor on the device, batching by indexing it (no DataLoader, no
per-sample transforms), a fused optimiser step, and summing the loss terms on the device so that an
epoch never waits on the host (and from the process settings of aevae.runtime, which `stage` makes).

The log is DVCLive's: `dvc exp show`, `dvc plots` and DVC's VS Code extension see a stage's figures
while it runs. A stage logs into metrics/<name>/train/: DVCLive's summary metrics.json (the latest
epoch, with `step`, the epoch's number) and a curve per figure, plots/metrics/<split>/<term>.tsv. No
timestamps: the same params give the same bytes.

A stage script keeps only its data, its model and what follows training:

    with trainer.stage("vae", p, "train", __file__) as run:
        ...load the data, build the model...
        run.train(model, train, test)
        ...finish the model and save it...
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import dvc.api
import torch
from dvc.exceptions import DvcException
from dvclive import Live
from torch import nn
from tqdm import tqdm

from aevae import UserError, atomic_path, runtime, write_json
from aevae.config import Params, TrainParams


class Epoch(NamedTuple):
    number: int
    means: dict[str, dict[str, float]]  # {"train": {term: mean}, "test": {term: mean}}, the model's loss terms
    seconds: float  # wall time of the training pass: the one figure that differs between runs


class Diverged(Exception):
    """The loss stopped being a finite number; the message says where."""


class Checkpoint:
    """The trainer's state after an epoch, in one file written atomically: the weights, AdamW's
    state, the random generators' states (which the next epoch draws from), and every epoch's
    means so far. `stamp` names what it belongs to (the params, code and data, see `stamp`): a
    file with another stamp, or one that cannot be read, is discarded, never resumed from."""

    def __init__(self, path: str | Path, stamp: str):
        self.path, self.stamp = Path(path), stamp

    def load(self) -> dict | None:
        """The saved state, or None (with a line on stderr saying why, when there was a file)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, weights_only=True)
            fresh = state["stamp"] != self.stamp
        except Exception as e:  # a torn or foreign file: anything torch.load can raise
            print(f"{self.path}: unreadable ({type(e).__name__}); discarded, training from epoch 1", file=sys.stderr)
            return None
        if fresh:
            print(f"{self.path}: made with other params, code or data; discarded, training from epoch 1",
                  file=sys.stderr)
            return None
        return state

    def save(self, model, opt, history: list[Epoch], device: torch.device) -> None:
        state = {"stamp": self.stamp, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "rng": torch.get_rng_state(), "history": [[e.number, e.means, e.seconds] for e in history]}
        if device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(device)
        try:
            with atomic_path(self.path) as tmp:
                torch.save(state, tmp)
        except OSError as e:
            raise UserError(f"{self.path}: cannot write the training checkpoint ({e.strerror or e}); the previous "
                            "one is kept: free some disk space and rerun, it resumes from there") from None

    def remove(self) -> None:
        """Once the stage has finished: no file, and no folder left empty."""
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:  # another stage's checkpoint is still there, or there was no folder
            pass


def checkpoint_for(name: str, params: dict, script: str | Path, device: torch.device,
                   data_dir: str | Path = "data/mnist") -> Checkpoint:
    """Training stage `name`'s checkpoint, checkpoints/<name>.pt, which git ignores and DVC never sees.
    Its stamp covers everything whose change would train other bytes: `params` (the values the stage
    reads), the device they resolved to (`auto` is a CPU on one machine and CUDA on another, with other
    random generators), the torch version, the package's code, the stage's script and the data."""
    files = [*Path(__file__).parent.glob("*.py"), script, *Path(data_dir).iterdir()]
    run = {"params": params, "device": device.type, "torch": torch.__version__}
    return Checkpoint(Path("checkpoints") / f"{name}.pt", stamp(run, files))


def stamp(params: dict, files: Iterable[str | Path]) -> str:
    """A digest of the params a stage reads and of the bytes of its code and data files."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for path in sorted(map(str, files)):
        h.update(path.encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()


def fit(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, ...],
    test: tuple[torch.Tensor, ...],
    cfg: TrainParams,
    device: torch.device,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    checkpoint: Checkpoint | None = None,
    on_epoch: Callable[[Epoch], None] = lambda epoch: None,
) -> list[Epoch]:
    """Train with AdamW on (inputs, *targets) tensors; `transform` maps each training batch's inputs.
    The model's `loss(*batch, epoch=...)` is told the epoch (from 1), for objectives that change in training.
    Calls `on_epoch` with each Epoch as it ends, and returns them all.

    With a `checkpoint`, the state is saved there after every epoch, and a run whose checkpoint
    matches resumes after its last epoch, to the same bytes as a run never stopped: it first hands
    `on_epoch` the epochs the checkpoint holds, so that a log written by `on_epoch` is whole.

    Randomness (init aside) comes from torch's global generators: seed them before building the model.
    Raises Diverged when a loss stops being finite.
    """
    backward_on_one_thread(model.to(device))  # the same bytes at any thread count
    train = tuple(t.to(device) for t in train)
    test = tuple(t.to(device) for t in test)
    n = len(train[0])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    # bf16: matmuls and convolutions in bfloat16, the weights, the optimiser and the loss in float32.
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=cfg.precision == "bf16")
    history = []
    state = checkpoint.load() if checkpoint else None
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history = [Epoch(*e) for e in state["history"]]
        print(f"{checkpoint.path}: resuming from epoch {len(history) + 1} of {cfg.epochs}", file=sys.stderr)
        for epoch in history:
            on_epoch(epoch)
    epochs = tqdm(range(len(history) + 1, cfg.epochs + 1), desc=type(model).__name__, unit="epoch")
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
        means = {"train": dict(zip(terms._fields, train_means)), "test": dict(zip(terms._fields, test_means))}
        history.append(Epoch(epoch, means, seconds))
        if checkpoint:
            checkpoint.save(model, opt, history, device)
        on_epoch(history[-1])
    return history


@torch.no_grad()
def mean_losses(model: torch.nn.Module, data: tuple[torch.Tensor, ...], epoch: int | None = None,
                batch_size: int = 2000) -> list[float]:
    """Per-example means of the model's loss terms over data, in eval mode (the objective of `epoch`)."""
    model.eval()
    sums = 0
    for batch in zip(*(t.split(batch_size) for t in data)):
        sums = sums + torch.stack(model.loss(*batch, epoch=epoch))
    return (sums / len(data[0])).tolist()


def backward_on_one_thread(module):
    """Run the backward pass of every convolution in `module` on one thread, and return `module`.

    oneDNN splits a convolution's weight and bias gradients between threads and sums the parts in an
    order that depends on their number: at 3, 5, 6, 8 or 16 threads the classifier's gradients differ in
    the last bits from those at 1, 2 or 4, and training grows the difference. On one thread the sum has
    one order. The forward pass and the other layers keep every thread: they give the same bytes at any
    count. The cost is measured in docs/reproducibility.md."""

    def pin(conv, inputs, out):
        node = out.grad_fn
        if node is None:  # no gradient wanted: evaluation
            return
        pool = torch.get_num_threads()

        def before(grads):
            torch.set_num_threads(1)

        def after(grad_inputs, grads):
            torch.set_num_threads(pool)

        node.register_prehook(before)
        node.register_hook(after)

    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            m.register_forward_hook(pin)
    return module


class Log:
    """A stage's DVCLive log, begun at its first epoch (`start`): DVCLive empties the folder when it
    begins, and until an epoch has finished the previous run's log is all there is."""

    def __init__(self, folder: Path):
        self.folder, self.live = folder, None

    def start(self) -> Live:
        if self.live is None:
            self.live = Live(str(self.folder), save_dvc_exp=False, dvcyaml=None)
        return self.live

    def epoch(self, epoch: Epoch, also: dict[str, Callable[[int], float]]) -> None:
        """One epoch's means ({split: {term: value}}), as `<split>/<term>` at step `epoch.number`; and each
        of `also`'s figures, a function of the epoch, as `<name>`."""
        live = self.start()
        live.step = epoch.number
        for split, terms in epoch.means.items():
            for term, value in terms.items():
                live.log_metric(f"{split}/{term}", value)
        for name, figure in also.items():
            live.log_metric(name, figure(epoch.number))
        live.next_step()

    def summary(self, name: str, value: float) -> None:
        """A figure of the finished run, in the summary (metrics.json) alone, not as a curve."""
        self.start().log_metric(name, value, plot=False)


@contextmanager
def logger(folder: str | Path) -> Iterator[Log]:
    """A DVCLive log writing into `folder` from its first epoch on (`Log.start`).

    DVC runs the stage, so DVCLive writes no dvc.yaml and saves no experiment of its own. If the
    block raises (divergence, Ctrl-C), `folder` is put back as it was: a mistake loses no earlier
    results, even ones that git does not hold yet. A process killed outright before its first epoch
    has ended leaves the previous log; killed later, the new run's partial log, which a resumed run
    writes anew from its checkpoint.
    """
    folder = Path(folder)
    with tempfile.TemporaryDirectory() as keep:
        old = Path(keep) / "old"
        if folder.exists():
            shutil.copytree(folder, old)
        log = Log(folder)
        try:
            yield log
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if old.exists():
                shutil.copytree(old, folder)
            raise
        log.start().end()


class Stage:
    """A training stage under way: its name (train_<name> in dvc.yaml), settings, device and log."""

    def __init__(self, name: str, p: Params, cfg: TrainParams, device: torch.device, log: Log, script: str | Path):
        self.name, self.p, self.cfg, self.device, self.log, self.script = name, p, cfg, device, log, script
        self.checkpoint, self.seconds = None, 0.0

    def train(self, model: nn.Module, train: tuple[torch.Tensor, ...], test: tuple[torch.Tensor, ...],
              transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
              also_log: dict[str, Callable[[int], float]] | None = None) -> dict[str, dict[str, float]]:
        """`fit` the model with the stage's settings, logging every epoch and resuming from the stage's
        checkpoint; the last epoch's means. `also_log` names figures of each epoch that are no loss term,
        each a function of the epoch (the KL's weight), logged beside them."""
        self.checkpoint = checkpoint_for(self.name, stage_params(f"train_{self.name}", self.p), self.script,
                                         self.device)
        history = fit(model, train, test, self.cfg, self.device, transform, self.checkpoint,
                      on_epoch=lambda epoch: self.log.epoch(epoch, also_log or {}))
        self.seconds = sum(e.seconds for e in history)
        return history[-1].means


def stage_params(stage: str, p: Params) -> dict:
    """The params `stage` reads, as dvc.yaml declares them (dvc.api.params_show); all of them where there
    is no DVC project to ask. They stamp the checkpoint."""
    try:
        return dvc.api.params_show(stages=[stage])
    except DvcException:
        return p.model_dump()


@contextmanager
def stage(name: str, p: Params, section: str, script: str | Path) -> Iterator[Stage]:
    """Training stage `name` (dvc.yaml's train_<name>), trained with params.yaml's `section` (train or
    classifier), logging into metrics/<name>/train/. The block loads the data, calls `run.train` and
    writes the model. If it fails, the previous log and model stay (`logger`). Once it has succeeded,
    the training time goes to metrics/<name>/time.json, which no stage reads, and the checkpoint goes."""
    cfg = getattr(p, section)
    runtime.setup(pin=cfg.precision == "float32")
    device = runtime.resolve_device(cfg.device, f"{section}.device")
    runtime.warn_precision(cfg.precision, device, f"{section}.precision")
    torch.manual_seed(cfg.seed)  # Seeded before the block builds the model, so its initial weights follow the seed.
    try:
        with logger(f"metrics/{name}/train") as log:
            run = Stage(name, p, cfg, device, log, script)
            yield run
            write_json(f"metrics/{name}/time.json", {"train_seconds": round(run.seconds, 2)})
        if run.checkpoint:
            run.checkpoint.remove()
    except Diverged as e:
        raise UserError(f"{e}; try a smaller {section}.lr (now {cfg.lr})") from None
