"""A sweep three ways, side by side in one run: dvc exp run one after another, DVC's queue, aevae.sweep.

    python bench/sweep.py [--experiments 6] [--train-size 1000] [--epochs 1]

Builds a small copy of this pipeline (the first N training images, the classifier on 2,000) in a
temporary folder, runs it once, and copies it three times, caches and run-cache included. In each copy
the same sweep of vae.beta (train_vae, evaluate@vae and render per experiment) runs one way:
- `dvc exp run -S vae.beta=…`, one after another, every core to each;
- `dvc exp run --queue` and `dvc queue start -j 2`, one thread each (AEVAE_THREADS=1);
- `python -m aevae.sweep`, on a Ray cluster of this machine alone.
Then aevae.sweep runs twice more in its copy: as it is (every experiment exists), and with the
experiments removed (every stage in the run-cache). Needs MNIST_MIRROR or the network, as `dvc repro`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BETAS = [0.25, 0.5, 2, 4, 8, 16, 32, 64]


def sh(cwd, *cmd, **env) -> str:
    run = subprocess.run(cmd, cwd=cwd, env={**os.environ, "DVC_NO_ANALYTICS": "1", **env},
                         capture_output=True, text=True)
    if run.returncode:
        sys.exit(f"error: {' '.join(cmd)} failed in {cwd}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run.stdout


def timed(cwd, *cmd, **env) -> tuple[float, str]:
    start = time.perf_counter()
    out = sh(cwd, *cmd, **env)
    return time.perf_counter() - start, out


def small_pipeline(path: Path, train_size: int, epochs: int) -> None:
    """This repository's pipeline on a subset, run once and committed: the sweeps' common baseline."""
    path.mkdir()
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore", ".dvcignore"):
        shutil.copy(ROOT / name, path / name)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"]["train_size"], p["train"]["epochs"] = train_size, epochs
    p["classifier"].update(train_size=2000, epochs=1)
    p["evaluate"].update(nll_samples=10, samples=1000)
    (path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "pipeline"],
                ["dvc", "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "run"]):
        sh(path, *cmd)


def experiment_count(repo: Path) -> int:
    """How many experiment refs (refs/exps/ab/cdef…/<name>) the repo holds, not counting DVC's own
    bookkeeping refs beside them."""
    refs = sh(repo, "git", "for-each-ref", "--format=%(refname)", "refs/exps/").split()
    return sum(len(r.split("/")) == 5 and len(r.split("/")[2]) == 2 for r in refs)


def queued(repo: Path, values: str) -> float:
    sh(repo, "dvc", "exp", "run", "--queue", "-S", f"vae.beta={values}")
    start = time.perf_counter()
    sh(repo, "dvc", "queue", "start", "-j", "2", AEVAE_THREADS="1")
    while re.search(r"\b(Queued|Running)\b", sh(repo, "dvc", "queue", "status")):
        time.sleep(1)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiments", type=int, default=6, choices=range(2, len(BETAS) + 1))
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    betas = BETAS[:args.experiments]
    values = ",".join(map(str, betas))
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        small_pipeline(base, args.train_size, args.epochs)
        ways = {w: Path(tmp) / w for w in ("sequential", "queue", "sweep")}
        for path in ways.values():
            shutil.copytree(base, path, symlinks=True)

        times = {}
        start = time.perf_counter()
        for beta in betas:
            sh(ways["sequential"], "dvc", "exp", "run", "-S", f"vae.beta={beta}")
        times["dvc exp run, one after another"] = time.perf_counter() - start
        times["dvc queue start -j 2, 1 thread each"] = queued(ways["queue"], values)
        sweep = [sys.executable, "-m", "aevae.sweep", "-S", f"vae.beta={values}"]
        times["python -m aevae.sweep, this machine"], log = timed(ways["sweep"], *sweep)
        times["aevae.sweep again: every experiment there"], _ = timed(ways["sweep"], *sweep)
        sh(ways["sweep"], "dvc", "exp", "remove", "-A")
        times["aevae.sweep again: refs gone, run-cache there"], again = timed(ways["sweep"], *sweep)
        counts = {w: experiment_count(path) for w, path in ways.items()}

    cores = len(os.sched_getaffinity(0))
    print(f"{len(betas)} experiments of vae.beta, {args.train_size} training images, {args.epochs} epoch(s); "
          f"{cores} cores; experiments made: {counts}")
    first = times["python -m aevae.sweep, this machine"]
    for what, seconds in times.items():
        print(f"{what:48} {seconds:7.1f} s   {seconds / first:5.2f}x the sweep")
    per = [float(s) for s in re.findall(r"^finished \S+ in (\d+) s", log, re.MULTILINE)]
    restored = len(re.findall(r"^finished \S+ in \d+ s: ran nothing", again, re.MULTILINE))
    print(f"run-cache second run: {restored}/{len(betas)} experiments trained nothing")
    if per:
        t = sum(per) / len(per)
        cpus = max(1, cores // len(betas))
        print(f"one experiment in the sweep: {t:.0f} s on {cpus} core(s), Ray's start-up and cloning included")
        for size in sorted({len(betas), 45}):  # 45: e.g. 5 betas x 3 likelihoods x 3 seeds
            for n in (1, 4, 16):
                rounds = math.ceil(size / (n * cores // cpus))
                print(f"  {size} experiments on {n:2} such machines: about {rounds} x {t:.0f} s = {rounds * t:.0f} s")

if __name__ == "__main__":
    main()
