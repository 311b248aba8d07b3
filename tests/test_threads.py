"""Any thread count, the same bytes: every stage after fetch at 1, 2, 3 and 6 threads, on every CPU. 3 and 6
are where oneDNN's convolution gradients, and ATen's sigmoid on a tensor split between threads, used to
differ (docs/reproducibility.md); 6 oversubscribes a 2-core machine."""

import copy
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, idx_bytes, write_params

STAGES = [["train.py", "ae"], ["train.py", "vae"], ["train_classifier.py"], ["evaluate.py", "ae"],
          ["evaluate.py", "vae"], ["render.py"]]


def run_stages(folder, raw_params, threads):
    rng = np.random.default_rng(0)
    mnist = folder / "data/mnist"
    mnist.mkdir(parents=True)
    # 301 test images: 301 x 784 values split between 2, 3 or 6 threads leave shares that end mid-vector.
    for prefix, n in (("train", 1000), ("t10k", 301)):
        digits = rng.integers(0, 10, n)
        # Noise with a digit's stripe in it: something for the classifier and the probe to learn.
        images = rng.integers(0, 128, (n, 28, 28))
        images[np.arange(n), 2 + 2 * digits] = 255
        (mnist / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
        (mnist / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(digits))
    raw_params["data"]["train_size"] = 1000
    raw_params["train"]["epochs"] = 2
    raw_params["classifier"] |= {"train_size": 1000, "epochs": 1}
    raw_params["evaluate"] |= {"nll_samples": 20, "samples": 500}
    write_params(folder, raw_params)
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), AEVAE_THREADS=str(threads))
    for stage in STAGES:
        subprocess.run([sys.executable, ROOT / "stages" / stage[0], *stage[1:]], cwd=folder, env=env, check=True,
                       capture_output=True)
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for top in ("models", "metrics", "plots") for p in sorted((folder / top).rglob("*"))
            if p.is_file() and not p.name.endswith("time.json")}  # wall times differ between any two runs


@pytest.mark.slow
def test_every_stage_gives_the_same_bytes_at_any_thread_count(tmp_path, raw_params):
    runs = {t: run_stages(tmp_path / f"threads{t}", copy.deepcopy(raw_params), t) for t in (1, 2, 3, 6)}
    assert {"models/vae.pt", "models/classifier.pt", "metrics/vae/train/plots/metrics/train/loss.tsv",
            "metrics/classifier/train/metrics.json", "metrics/vae/evaluate.json", "plots/images/samples.png",
            "plots/images/latent.png"} <= set(runs[1])
    for t in (2, 3, 6):
        differ = sorted(path for path in runs[1] if runs[t].get(path) != runs[1][path])
        assert not differ, f"{t} threads changed {differ}"
