"""What the stages' CPU settings cost and buy, measured side by side in one run.

    python bench/cpu_settings.py [--train-size 10000] [--epochs 2] [--data data/mnist]

1. Pinning: an epoch of the AE and of the classifier with each library on its fastest code path
   for this CPU, against the AVX2 paths that aevae.runtime pins for reproducibility (1 thread).
2. Load: an AE epoch on an idle machine and next to two busy processes (two pure-Python loops,
   one per core of a 2-core machine), with 1 thread (the default `threads`) and with 2.

Every measurement runs in a fresh process, since the code paths and the thread pool are chosen
once per process. An epoch's time is the best after the first (which pays for warm-up).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import platform
import subprocess
import sys
import time

from aevae import runtime


def cpu_extensions() -> str:
    """This CPU's vector extensions that set the speed of float32 and bf16 matmuls, for a bench's first line."""
    return ", ".join(runtime.cpu_extensions()) or "none of avx2 / avx512 / amx"


def epoch_seconds(kind: str, threads: int, pin: bool, data_dir: str, n: int, epochs: int) -> tuple[float, str]:
    """Train a fresh model for `epochs` on the first n images; the best epoch after the first."""
    runtime.setup(threads, pin=pin)
    import torch

    from aevae import classifier, config, data, model
    from aevae.train import fit

    p = config.load()
    x, y = data.load(data_dir, "train", n)
    test = data.load(data_dir, "test", 1000)
    torch.manual_seed(0)
    if kind == "classifier":
        net, train = classifier.Classifier(), (x, y)
    else:
        net, train, test = model.build(kind, p), (x,), test[:1]
    cfg = dataclasses.replace(p.train, epochs=epochs)
    seconds = [e.seconds for e in fit(net, train, test, cfg, torch.device("cpu"))]
    return min(seconds[1:] or seconds), torch.backends.cpu.get_cpu_capability()


def measure(*args) -> tuple[float, str]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(epoch_seconds, args)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-size", type=int, default=10000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--data", default="data/mnist", help="folder with the four uncompressed IDX files")
    args = ap.parse_args()
    common = (args.data, args.train_size, args.epochs)
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, CPU extensions: {cpu_extensions()},"
          f" torch {torch.__version__}")
    print(f"{args.epochs} epochs on {args.train_size} images; s/epoch is the best after the first\n")

    print(f"{'pinning, 1 thread':<22}{'native':>10}{'pinned':>10}{'cost':>8}   code path native -> pinned")
    for kind in ("ae", "classifier"):
        (native, path_n), (pinned, path_p) = measure(kind, 1, False, *common), measure(kind, 1, True, *common)
        print(f"{kind:<22}{native:>9.3f}s{pinned:>9.3f}s{pinned / native:>7.2f}x   {path_n} -> {path_p}")

    print(f"\n{'load, AE, pinned':<22}{'idle':>10}{'2 busy':>10}{'slower':>8}")
    for threads in (1, 2):
        idle, _ = measure("ae", threads, True, *common)
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        try:
            time.sleep(0.5)
            loaded, _ = measure("ae", threads, True, *common)
        finally:
            for b in busy:
                b.kill()
        print(f"{f'{threads} thread' + 's' * (threads > 1):<22}{idle:>9.3f}s{loaded:>9.3f}s{loaded / idle:>7.2f}x")


if __name__ == "__main__":
    main()
