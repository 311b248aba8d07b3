"""The benchmarks run end to end on a small subset (their timings are not asserted: speed is for bench/)."""

import re
import subprocess
import sys

import pytest

from aevae import download

from helpers import MNIST, ROOT, needs_mnist

pytestmark = pytest.mark.slow  # the benches themselves, on a small subset


def bench(tmp_path, script, *args) -> str:
    download.fetch([str(MNIST)], tmp_path / "mnist")
    return subprocess.run(
        [sys.executable, f"bench/{script}", "--data", tmp_path / "mnist", *args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout


@needs_mnist
def test_train_speed_sets_the_loops_against_the_bound_and_the_floor(tmp_path):
    out = bench(tmp_path, "train_speed.py", "--epochs", "2", "--train-size", "640")
    floor_vs_bound = float(re.search(r"-> floor [\d.]+ s/epoch \(([\d.]+)x the bound\)", out).group(1))
    table = dict(re.findall(r"^(article-style|aevae\.fit|unpinned float32|unpinned bf16) +(\d.*)$", out, re.MULTILINE))
    assert list(table) == ["article-style", "aevae.fit", "unpinned float32", "unpinned bf16"]
    (_, article_rate, _, _, _, article_loss), (_, ours_rate, vs_article, vs_bound, vs_floor, ours_loss), \
        (*_, free_loss), (*_, bf16_loss) = (row.split() for row in table.values())
    ratio = lambda text: float(text.rstrip("x").replace(",", ""))
    # The printed ratios agree with each other, to their rounding.
    assert ratio(vs_article) == pytest.approx(ratio(ours_rate) / ratio(article_rate), rel=0.01, abs=0.01)
    assert ratio(vs_bound) / ratio(vs_floor) == pytest.approx(floor_vs_bound, rel=0.02)
    assert floor_vs_bound > 1  # the floor adds the optimiser and the real shapes to the bound's matmuls
    # Both loops train the same model from the same seed: they learn about as much.
    assert float(ours_loss) == pytest.approx(float(article_loss), rel=0.1)
    assert float(free_loss) == pytest.approx(float(ours_loss), rel=0.1)  # other code paths, the same learning
    assert float(bf16_loss) == pytest.approx(float(ours_loss), rel=0.1)  # bf16 rounds, but learns the same


@needs_mnist
def test_cpu_settings_prints_the_pinning_cost_and_the_load_factor(tmp_path):
    out = bench(tmp_path, "cpu_settings.py", "--train-size", "640", "--epochs", "2")
    assert re.search(r"CPU extensions: .*avx2", out)
    pinned = re.findall(r"^(ae|classifier) +([\d.]+)s +([\d.]+)s +([\d.]+)x .* -> (\w+)$", out, re.MULTILINE)
    assert [row[0] for row in pinned] == ["ae", "classifier"] and all(row[4] == "AVX2" for row in pinned)
    load = re.findall(r"^(old: 1 thread, AVX2|new: auto \(\d+\), AVX2,STRICT) +([\d.]+)s +([\d.]+)s +([\d.]+)x"
                      r" +([\d.]+)s +([\d.]+)x$", out, re.MULTILINE)
    assert [row[0].split(":")[0] for row in load] == ["old", "new"]
    rows = [row[1:4] for row in pinned] + [row[1:4] for row in load] + [(row[1], row[4], row[5]) for row in load]
    for base, other, ratio in rows:  # each ratio is its row's times' (rounded)
        base, other, ratio = float(base), float(other), float(ratio)
        assert (other - 5e-4) / (base + 5e-4) - 5e-3 <= ratio <= (other + 5e-4) / (base - 5e-4) + 5e-3
