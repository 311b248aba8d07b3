"""The benchmark runs end to end on a small subset (its timings are not asserted: speed is for bench/)."""

import re
import subprocess
import sys

from aevae import data
from conftest import MNIST, ROOT, needs_mnist


@needs_mnist
def test_train_speed_bench_prints_both_loops_against_bound_and_floor(tmp_path):
    data.fetch([str(MNIST)], tmp_path / "mnist")
    out = subprocess.run(
        [sys.executable, "bench/train_speed.py", "--epochs", "2", "--train-size", "640", "--data", tmp_path / "mnist"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert re.search(r"-> floor [\d.]+ s/epoch", out)
    table = [line.split() for line in out.splitlines() if re.match(r"(loop|article-style|aevae.fit) ", line)]
    header, article, ours = table
    assert header[-4:] == ["vs", "floor", "test", "loss"]
    assert article[3] == "1.00x"  # the article loop against itself
    for row in article, ours:
        assert len(row) == 7 and all(float(v.rstrip("x").replace(",", "")) > 0 for v in row[1:])
