"""The benchmarks run end to end on a small subset. Their timings are not asserted (speed is for bench/),
nor is their arithmetic on them: what is asserted is what holds whatever the timings, e.g. that every loop
learns the same."""

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
    assert re.search(r"-> floor [\d.]+ s/epoch \(([\d.]+)x the bound\)", out)
    table = dict(re.findall(r"^(article-style|aevae\.fit|unpinned float32|unpinned bf16) +(\d.*)$", out, re.MULTILINE))
    assert list(table) == ["article-style", "aevae.fit", "unpinned float32", "unpinned bf16"]
    (*_, article_loss), (*_, ours_loss), (*_, free_loss), (*_, bf16_loss) = (row.split() for row in table.values())
    # Both loops train the same model from the same seed: they learn about as much.
    assert float(ours_loss) == pytest.approx(float(article_loss), rel=0.1)
    assert float(free_loss) == pytest.approx(float(ours_loss), rel=0.1)  # other code paths, the same learning
    assert float(bf16_loss) == pytest.approx(float(ours_loss), rel=0.1)  # bf16 rounds, but learns the same


@needs_mnist
def test_cpu_settings_prints_the_pinning_cost_and_the_load_factor(tmp_path):
    out = bench(tmp_path, "cpu_settings.py", "--train-size", "640", "--epochs", "2")
    assert re.search(r"CPU extensions: .*avx2", out)
    pinned = re.findall(r"^(ae|classifier) +([\d.]+)s +([\d.]+)s +([\d.]+)x .* -> (\w+)$", out, re.MULTILINE)
    # the pinned child runs ATen's AVX2 kernels, whatever this CPU has beyond
    assert [row[0] for row in pinned] == ["ae", "classifier"] and all(row[4] == "AVX2" for row in pinned)
    load = re.findall(r"^(old: 1 thread, AVX2|new: auto \(free cores\), AVX2,STRICT) +", out, re.MULTILINE)
    assert [row.split(":")[0] for row in load] == ["old", "new"]
    mkl = re.findall(r"^(ae|classifier) +[\d.]+s +[\d.]+s +[\d.]+x$", out, re.MULTILINE)  # with MKL's check answered, and not
    assert mkl == ["ae", "classifier"]


@needs_mnist
def test_quadrature_times_both_ways_to_the_same_nll_and_checks_it_against_an_independent_grid(tmp_path):
    out = bench(tmp_path, "quadrature.py", "--train-size", "640", "--epochs", "1", "--images", "3", "--check", "2",
                "--test-size", "6")
    union, own = re.search(r"^3 test images: .* mean NLL (\S+) and (\S+)$", out, re.MULTILINE).groups()
    assert float(union) == pytest.approx(float(own), abs=1e-3)
    ours, grid = re.search(r"^2 test images: mean NLL (\S+) by quadrature, (\S+) by the independent grid", out,
                           re.MULTILINE).groups()
    assert float(ours) == pytest.approx(float(grid), abs=0.05)


@needs_mnist
def test_classifier_layout_scores_both_layouts_to_the_same_features(tmp_path):
    import torch

    from aevae import classifier

    torch.manual_seed(0)
    classifier.save(classifier.Classifier(), tmp_path / "classifier.pt")
    out = bench(tmp_path, "classifier_layout.py", "--images", "500", "--repeats", "2", "--model", tmp_path / "classifier.pt")
    assert re.search(r"^ +contiguous [\d.]+ s\n channels-last [\d.]+ s$", out, re.MULTILINE)
    assert float(re.search(r"features differ by at most (\S+)$", out, re.MULTILINE).group(1)) < 1e-4
