"""What the stages' CPU settings cost and buy, measured side by side in one run.

    python bench/cpu_settings.py [--train-size 10000] [--epochs 2] [--data data/mnist] [--parts pin,threads,mkl]

1. Pinning: an epoch of the AE and of the classifier with each library on its fastest code path
   for this CPU, against the pinned paths of aevae.runtime (AVX2, MKL's strict mode), 1 thread.
2. Threads and load: an AE epoch with the old settings (1 thread, MKL_CBWR=AVX2) and the new ones
   (every core, MKL_CBWR=AVX2,STRICT), on an idle machine, next to two busy processes (two
   pure-Python loops), and as one of two such stages running at once.
3. MKL's CPU check: an epoch of the AE and of the classifier, pinned, 1 thread, with MKL's vendor check
   answered (aevae.runtime, every stage's way) and without (AEVAE_MKL_OVERRIDE=off), alternating.
   On an Intel CPU the two are the same code; elsewhere MKL runs its own code without the answer.

Every measurement runs in a fresh process, since the code paths and the thread pool are chosen
once per process. An epoch's time is the best after the first (which pays for warm-up).
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import subprocess
import sys
import time

from common import extensions_text, parser

from aevae import runtime

OLD = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def epoch_seconds(kind: str, threads, pin: dict | None, data_dir: str, n: int, epochs: int) -> tuple[float, str]:
    """Train a fresh model for `epochs` on the first n images under the code paths `pin` (None: unpinned);
    the best epoch after the first."""
    runtime.setup(None if threads == "auto" else threads, pin=False)
    os.environ.update(pin or {})  # before torch's first operation, which reads them
    import torch

    from aevae import classifier, config, data, model
    from aevae.trainer import fit

    p = config.load()
    x, y = data.load(data_dir, "train", n)
    test = data.load(data_dir, "test", 1000)
    torch.manual_seed(0)
    if kind == "classifier":
        net, train = classifier.Classifier(), (x, y)
    else:
        net, train, test = model.build(kind, p), (x,), test[:1]
    cfg = p.train.model_copy(update={"epochs": epochs})
    seconds = [e.seconds for e in fit(net, train, test, cfg, torch.device("cpu"))]
    return min(seconds[1:] or seconds), torch.backends.cpu.get_cpu_capability()


def measure(*args, side_by_side: int = 1) -> float:
    """The epoch time of `side_by_side` identical trainings started at once (their mean)."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(side_by_side) as pool:
        runs = [pool.apply_async(epoch_seconds, args) for _ in range(side_by_side)]
        return sum(r.get()[0] for r in runs) / side_by_side


def in_fresh_process(env: dict, *args) -> tuple[float, str]:
    """epoch_seconds(*args) in a spawned process whose environment also holds `env` from its start."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(epoch_seconds, args)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def busy(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)
    return procs


def main():
    ap = parser(__doc__, epochs=2, train_size=10000)
    ap.add_argument("--parts", default="pin,threads,mkl", help="which of the three measurements to run")
    args = ap.parse_args()
    parts = args.parts.split(",")
    common = (args.data, args.train_size, args.epochs)
    import torch

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.machine()}, {cores} cores, CPU extensions: {extensions_text()}, torch {torch.__version__}")
    print(f"{args.epochs} epochs on {args.train_size} images; s/epoch is the best after the first\n")

    if "pin" in parts:
        print(f"{'pinning, 1 thread':<22}{'native':>10}{'pinned':>10}{'cost':>8}   code path native -> pinned")
        for kind in ("ae", "classifier"):
            native, path_n = in_fresh_process({}, kind, 1, None, *common)
            pinned, path_p = in_fresh_process({}, kind, 1, runtime.PINNED, *common)
            print(f"{kind:<22}{native:>9.3f}s{pinned:>9.3f}s{pinned / native:>7.2f}x   {path_n} -> {path_p}")

    if "mkl" in parts:
        print(f"\n{'MKL, pinned, 1 thread':<22}{'answered':>10}{'own':>10}{'answered/own':>14}   (best of 2 each, alternating)")
        for kind in ("ae", "classifier"):
            times = {"on": [], "off": []}
            for _ in range(2):
                for override in times:
                    args_ = (kind, 1, runtime.PINNED, *common)
                    times[override].append(in_fresh_process({runtime.MKL_OVERRIDE: override}, *args_)[0])
            on, off = min(times["on"]), min(times["off"])
            print(f"{kind:<22}{on:>9.3f}s{off:>9.3f}s{on / off:>13.2f}x")

    if "threads" not in parts:
        return
    print(f"\n{'AE, s/epoch':<30}{'idle':>8}{'2 busy':>10}{'slower':>8}{'2 at once':>11}{'slower':>8}")
    for name, threads, pin in (("old: 1 thread, AVX2", 1, OLD), ("new: auto (free cores), AVX2,STRICT", "auto",
                                                                 runtime.PINNED)):
        idle = measure("ae", threads, pin, *common)
        procs = busy(2)
        try:
            loaded = measure("ae", threads, pin, *common)
        finally:
            for b in procs:
                b.kill()
        pair = measure("ae", threads, pin, *common, side_by_side=2)
        print(f"{name:<30}{idle:>7.3f}s{loaded:>9.3f}s{loaded / idle:>7.2f}x{pair:>10.3f}s{pair / idle:>7.2f}x")


if __name__ == "__main__":
    main()
