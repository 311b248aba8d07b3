"""Training speed, side by side in one run: the article's loop vs the pipeline's trainer (float32 and bf16)
vs the matmul bound and the floor.

    python bench/train_speed.py [--epochs 3] [--train-size 60000] [--device cpu|cuda] [--data data/mnist]

Both loops train the same model (params.yaml's VAE) on the same real MNIST from the same seed.
The article-style loop is torchvision's MNIST dataset with ToTensor, a shuffling DataLoader
of batch 64, the default AdamW and a loss.item() per step, as in the article; it runs in a
child process, so that none of the trainer's process-wide settings speed it up. The bound is
the epoch's matmul FLOPs divided by the throughput of one 64x784 @ 784x512 matmul measured
here, now: what the epoch would take if every matmul ran at that speed and nothing else cost.
The floor is tighter and closer to what a loop can reach: the step's own matmuls, at their
real shapes (the batch-64 weight gradients run slower than the bound's shape), plus torch's
fused AdamW update, which streams the parameters and their Adam state through memory; each
is timed alone, so the floor counts no elementwise op, no autograd and no Python. Bound and floor
are float32's; the trainer in bf16 (train.precision) runs in a child whose code paths are left
unpinned, as a training stage leaves them for bf16, and is fast only on a CPU with AVX-512 BF16 or AMX;
so that bf16 is set against float32 on the same footing, float32 runs unpinned in a child too.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
import torch
from common import extensions_text, parser
from torchvision import datasets, transforms

from aevae import config, data, model, runtime
from aevae.runtime import resolve_device
from aevae.trainer import fit


def seconds_per_call(fn, device: torch.device, seconds: float = 2.0) -> float:
    for _ in range(20):
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        n += 20
    return (time.perf_counter() - start) / n


def matmul_gflops(device: torch.device) -> float:
    a, w = torch.randn(64, 784, device=device), torch.randn(784, 512, device=device)
    return 2 * 64 * 784 * 512 / seconds_per_call(lambda: a @ w, device) / 1e9


def layers(net: torch.nn.Module) -> list[tuple[torch.nn.Linear, bool]]:
    """Each Linear layer, and whether backward needs the grad of its input (all but the first's: the data)."""
    return [(m, m is not net.encoder[0]) for m in net.modules() if isinstance(m, torch.nn.Linear)]


def epoch_gflop(net: torch.nn.Module, n_samples: int) -> float:
    """Matmul FLOPs of one training epoch: forward, grad of the weights, and grad of the inputs."""
    per_sample = sum(2 * m.in_features * m.out_features * (3 if grad_in else 2) for m, grad_in in layers(net))
    return per_sample * n_samples / 1e9


def step_floor(net: torch.nn.Module, cfg: config.TrainParams, device: torch.device) -> tuple[float, float]:
    """Seconds per step of what no training loop can skip, each timed alone: the step's matmuls at the
    model's own shapes and layouts (as autograd calls them), and torch's fused AdamW update of its parameters."""
    mms = []
    for m, grad_in in layers(net):
        w, b = m.weight.detach(), m.bias.detach()
        a = torch.rand(cfg.batch_size, m.in_features, device=device)
        g = torch.randn(cfg.batch_size, m.out_features, device=device)
        mms += [lambda w=w, b=b, a=a: torch.addmm(b, a, w.t()), lambda g=g, a=a: g.t() @ a]
        if grad_in:
            mms.append(lambda g=g, w=w: g @ w)
    params = [p.detach().clone().requires_grad_() for p in net.parameters()]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)  # as fit's
    return seconds_per_call(lambda: [mm() for mm in mms], device), seconds_per_call(opt.step, device)


def article_loop(root: str, n: int, epochs: int, lr: float, device: str, new_vae, test_x, threads: int):
    """The article's training loop on the first n images, kept as it is (with the pipeline's thread count):
    seconds per epoch, and the test loss."""
    torch.set_num_threads(threads)
    net = new_vae()
    mnist = datasets.MNIST(root=root, train=True, transform=transforms.ToTensor(), download=False)
    train = torch.utils.data.Subset(mnist, range(n))
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr)
    seconds = []
    for _ in range(epochs):
        net.train()
        start = time.perf_counter()
        losses = []
        for x, _ in loader:
            x = x.to(device).view(-1, 784)
            opt.zero_grad()
            loss = net.loss(x).loss
            loss.backward()
            opt.step()
            losses.append(loss.item())
        seconds.append(time.perf_counter() - start)
    return seconds, test_loss(net, test_x)


def unpinned_trainer(p, cfg, device: str, data_dir: str, n: int, new_vae):
    """aevae.fit with the code paths unpinned (as a bf16 stage runs), in a fresh process: seconds per epoch,
    and the test loss."""
    runtime.setup(pin=False)
    train_x, _ = data.load(data_dir, "train", n)
    test_x, _ = data.load(data_dir, "test")
    net = new_vae()
    seconds = [e.seconds for e in fit(net, (train_x,), (test_x,), cfg, torch.device(device))]
    return seconds, test_loss(net, test_x.to(device))


def test_loss(net, test_x) -> float:
    torch.manual_seed(0)  # the same z draws for both loops' models
    net.eval()
    with torch.no_grad():
        return sum(net.loss(xb).loss.item() for xb in test_x.split(2000)) / len(test_x)


def steady(seconds: list[float]) -> float:
    """The best epoch after the first, which pays for warm-up (allocator, thread pool, caches)."""
    return min(seconds[1:]) if len(seconds) > 1 else seconds[0]


@contextlib.contextmanager
def unpinned():
    """This process's pins out of the environment while a child starts: a bf16 stage runs unpinned, and a
    child that inherited ONEDNN_MAX_CPU_ISA=AVX2 would emulate bf16 on a CPU that has it."""
    saved = {k: os.environ.pop(k) for k in runtime.PINNED if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def in_child(fn, *args):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


class NewVAE:
    """Builds the same seeded VAE in either process (a picklable callable)."""

    def __init__(self, p, device):
        self.p, self.device = p, device

    def __call__(self):
        torch.manual_seed(self.p.train.seed)
        return model.build("vae", self.p).to(self.device)


def main():
    ap = parser(__doc__, epochs=3, train_size=60000)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    p = config.load()
    runtime.setup()  # as every stage does; the article's loop, in a fresh child, keeps torch's defaults
    device = resolve_device(args.device, "--device")
    cfg = p.train.model_copy(update={"epochs": args.epochs})
    train_x, _ = data.load(args.data, "train", args.train_size)
    test_x, _ = data.load(args.data, "test")
    new_vae = NewVAE(p, device)

    gflops = matmul_gflops(device)
    work = epoch_gflop(new_vae(), len(train_x))
    bound = work / gflops
    steps = math.ceil(len(train_x) / cfg.batch_size)
    mm_step, adamw_step = step_floor(new_vae(), cfg, device)
    floor = steps * (mm_step + adamw_step)

    with tempfile.TemporaryDirectory() as root:  # torchvision wants MNIST/raw/<original names>
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for f in Path(args.data).iterdir():
            os.symlink(f.resolve(), raw / f.name)
        article, article_test = in_child(
            article_loop, root, len(train_x), args.epochs, cfg.lr, str(device), new_vae, test_x, torch.get_num_threads()
        )

    with unpinned():
        bf16, bf16_test = in_child(unpinned_trainer, p, cfg.model_copy(update={"precision": "bf16"}), str(device),
                                   args.data, len(train_x), new_vae)
        free, free_test = in_child(unpinned_trainer, p, cfg.model_copy(update={"precision": "float32"}), str(device),
                                   args.data, len(train_x), new_vae)
    net = new_vae()
    ours = [e.seconds for e in fit(net, (train_x,), (test_x,), cfg.model_copy(update={"precision": "float32"}), device)]
    ours_test = test_loss(net, test_x.to(device))

    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, CPU extensions: {extensions_text()},"
          f" {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}")
    print(f"matmul 64x784 @ 784x512: {gflops:.0f} GFLOP/s; one epoch = {work:.0f} GFLOP of matmuls"
          f" -> bound {bound:.2f} s/epoch")
    print(f"timed alone, per step: the step's own matmuls {mm_step * 1e3:.2f} ms"
          f" ({work / len(train_x) * cfg.batch_size / mm_step:.0f} GFLOP/s), fused AdamW {adamw_step * 1e3:.2f} ms"
          f" -> floor {floor:.2f} s/epoch ({floor / bound:.2f}x the bound)")
    print(f"{args.epochs} epochs of the VAE on {len(train_x)} images, batch {cfg.batch_size};"
          " s/epoch is the best epoch after the first\n")
    print(f"{'loop':<16}{'s/epoch':>9}{'samples/s':>12}{'vs article':>12}{'vs bound':>10}{'vs floor':>10}"
          f"{'test loss':>11}")
    rows = [("article-style", article, article_test), ("aevae.fit", ours, ours_test),
            ("unpinned float32", free, free_test), ("unpinned bf16", bf16, bf16_test)]
    for name, secs, test in rows:
        s = steady(secs)
        print(f"{name:<16}{s:>9.2f}{len(train_x) / s:>12,.0f}{steady(article) / s:>11.2f}x{s / bound:>9.2f}x"
              f"{s / floor:>9.2f}x{test:>11.3f}")
    native = "native on this CPU" if runtime.native_bf16(device) else "emulated on this CPU: no AVX-512 BF16 or AMX"
    print(f"(bf16: {native}; bound and floor are float32's)")
    print(f"\nper-epoch seconds: article {[round(s, 2) for s in article]}, aevae.fit {[round(s, 2) for s in ours]},"
          f" unpinned float32 {[round(s, 2) for s in free]}, unpinned bf16 {[round(s, 2) for s in bf16]}")
    # The child's own figure is not to be had: a spawned child is first a fork, counted at the parent's size.
    print(f"peak RSS of the trainer's process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
