"""The seed summary: groups of experiments that differ only in their seeds, as mean ± sd and n."""

import json
import math
import statistics
import time

import pytest

from aevae import UserError, summary

from helpers import needs_mnist, sh


def runs(points, running=()):
    """The runs `summary.experiments` reads for a baseline (the first point) and its experiments (the rest),
    less those named in `running`, which are not finished."""
    return [summary.Experiment(name, summary.flatten(params), {"ae": ae, "vae": vae}, baseline=i == 0)
            for i, (name, params, ae, vae) in enumerate(points) if name not in running]


def point(name, seed, beta, fd_ae, fd_vae, kl):
    return (name, {"train": {"seed": seed, "lr": 0.001}, "vae": {"beta": beta}, "evaluate": {"seed": 0}},
            {"frechet_samples": fd_ae}, {"frechet_samples": fd_vae, "kl": kl})


def test_groups_differ_only_in_seeds_and_the_figures_are_mean_and_sample_sd():
    data = runs([point("main", 0, 1.0, 300.0, 98.0, 30.0), point("s1", 1, 1.0, 340.0, 96.0, 31.0),
                 point("s2", 2, 1.0, 320.0, 97.5, 30.5), point("b4", 0, 4.0, 300.0, 150.0, 12.0),
                 point("b4s1", 1, 4.0, 340.0, 154.0, 12.4), point("s3", 3, 1.0, 300.0, 98.0, 30.0)],
                running={"s3"})
    groups = summary.groups(data)
    assert sorted(sorted(r.name for r in g) for g in groups.values()) == [["b4", "b4s1"], ["main", "s1", "s2"]]
    out = summary.summarize(data, ["frechet_samples", "kl"])
    # by hand: sample sds 20.0 and 1.04, kept to two significant digits, and the means to as many decimals
    assert statistics.stdev([300.0, 340.0, 320.0]) == 20.0
    assert "| frechet_samples | 320 ± 20 | 97.2 ± 1.0 |" in out
    assert "| kl | – | 30.50 ± 0.50 |" in out  # the AE has no KL
    assert "**vae.beta=1.0** (main, s1, s2; over train.seed)" in out and "**vae.beta=4.0**" in out
    assert "| metric (n = 3) | AE | VAE |" in out and "| metric (n = 2) | AE | VAE |" in out


def test_a_sweep_table_has_a_row_per_group_and_a_saved_file_gives_the_same(tmp_path, monkeypatch):
    data = runs([point("main", 0, 1.0, 300.0, 98.0, 30.0), point("s1", 1, 1.0, 340.0, 96.0, 31.0),
                 point("b4", 0, 4.0, 300.0, 150.0, 12.0)])
    out = summary.summarize(data, ["frechet_samples", "kl"], all_groups=True, model="vae")
    assert out.splitlines() == ["| vae.beta | n | frechet_samples | kl |", "| ---: | ---: | ---: | ---: |",
                                "| 1.0 | 2 | 97.0 ± 1.4 | 30.50 ± 0.71 |", "| 4.0 | 1 | 150 | 12 |"]
    monkeypatch.setattr(summary, "experiments", lambda: data)
    monkeypatch.setattr("sys.argv", ["summary", "--save", str(tmp_path / "runs.json"), "--all", "--model", "vae"])
    summary.main()
    assert summary.summarize(summary.load(tmp_path / "runs.json"), ["frechet_samples", "kl"], True, "vae") == out
    assert [r.name for r in summary.select(data, ["vae.beta=4.0"])] == ["b4"]
    assert [r.name for r in summary.select(data, ["train.seed=1", "vae.beta=1"])] == ["s1"]
    with pytest.raises(UserError, match="--where vae.betta=1: no run has a param 'vae.betta'"):
        summary.select(data, ["vae.betta=1"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UserError, match="bad.json: not a file that --save wrote"):
        summary.load(tmp_path / "bad.json")


def test_a_single_run_is_shown_without_an_error_bar_and_no_runs_is_an_error():
    out = summary.summarize(runs(([point("main", 0, 1.0, 300.0, 98.0, 30.0)])), ["frechet_samples"])
    assert "| frechet_samples | 300 | 98 |" in out and "n = 1" in out
    with pytest.raises(UserError, match="no finished runs .* dvc exp run --queue -S 'train.seed=range"):
        summary.summarize([], ["frechet_samples"])


def test_groups_are_not_split_on_settings_that_change_no_byte_and_say_so():
    """The docs advise AEVAE_THREADS=1 for the queue; older runs had `threads` as a param, all have devices."""
    base, s1, s2 = (point(n, seed, 1.0, 300.0 + seed, 98.0 + seed, 30.0) for n, seed in [("main", 0), ("s1", 1), ("s2", 2)])
    base[1].update(threads="auto", evaluate={"seed": 0, "device": "auto"})
    for p in (s1, s2):
        p[1].update(threads=1, evaluate={"seed": 0, "device": "cpu"})
    found = runs(([base, s1, s2]))
    (group,) = summary.groups(found).values()
    assert len(group) == 3
    out = summary.summarize(found, ["frechet_samples"])
    assert "**params.yaml as committed** (main, s1, s2; over train.seed)" in out
    assert "(Not told apart by evaluate.device, threads: where a run ran, not what it computed.)" in out
    # without the committed baseline, the group is not called the committed params
    lr = [(n, {**p, "train": {**p["train"], "lr": 0.01}}, a, v) for n, p, a, v in (base, s1, s2)]
    out = summary.summarize(runs(([base, *lr[1:]])), ["frechet_samples"], all_groups=True)
    assert "**train.lr=0.001** (main)" in out and "**train.lr=0.01** (s1, s2; over train.seed)" in out
    out = summary.summarize(summary.select(runs(([base, *lr[1:]])), ["train.lr=0.01"]), ["frechet_samples"])
    assert "**the same params** (s1, s2; over train.seed)" in out


def test_a_second_run_of_the_same_params_and_seeds_is_counted_once_and_said(capsys):
    found = runs(([point("main", 0, 1.0, 300.0, 98.0, 30.0), point("again", 0, 1.0, 300.0, 98.0, 30.0),
                                point("s1", 1, 1.0, 340.0, 96.0, 31.0)]))
    (group,) = summary.groups(found).values()
    assert [r.name for r in group] == ["main", "s1"]
    assert "summary: again has the params and seeds of main: counted once, as main" in capsys.readouterr().err


def test_figures_keep_two_significant_digits_of_the_sd_at_any_scale_and_say_a_non_finite_value():
    assert summary.mean_sd([1234.0, 1490.0]) == "1360 ± 180"  # sd 181.0
    assert summary.mean_sd([12345.0, 22345.0, 17345.0]) == "17300 ± 5000"
    assert summary.mean_sd([0.1234, 0.1256]) == "0.1245 ± 0.0016"
    assert summary.mean_sd([1.0, math.nan, 2.0]) == "non-finite in 1 of 3"
    assert summary.mean_sd([math.inf]) == "non-finite in 1 of 1"
    found = runs(([point("main", 0, 1.0, math.inf, 98.0, 30.0), point("s1", 1, 1.0, 340.0, 96.0, 31.0)]))
    assert "| frechet_samples | non-finite in 1 of 2 | 97.0 ± 1.4 |" in summary.summarize(found, ["frechet_samples"])


def test_a_sweep_table_sorts_numbers_as_numbers_and_where_matches_a_list():
    points = [point(f"b{b}", 0, b, 300.0, 100.0 + b, 30.0) for b in (1.0, 10.0, 2.0)]
    for p in points:
        p[1]["model"] = {"hidden_dims": [512, 256]}
    found = runs((points))
    rows = summary.summarize(found, ["frechet_samples"], all_groups=True, model="vae").splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| 1.0", "| 2.0", "| 10.0"]
    points[1][1]["model"] = {"hidden_dims": [64]}
    found = runs((points))
    assert [r.name for r in summary.select(found, ["model.hidden_dims=[512,256]"])] == ["b1.0", "b2.0"]


@needs_mnist
@pytest.mark.slow
def test_a_real_seed_sweep_gives_one_group_of_three(ran_repo):
    sh(ran_repo, "dvc", "exp", "run", "--queue", "-S", "train.seed=range(1,3)")  # the docs' sweep, 2 points
    sh(ran_repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 300
    while time.time() < deadline and any(s in sh(ran_repo, "dvc", "queue", "status") for s in ("Running", "Queued")):
        time.sleep(2)
    out = sh(ran_repo, "python", "-m", "aevae.summary", "--metrics", "frechet_samples", "--save", "runs.json")
    found = summary.load(ran_repo / "runs.json")  # what dvc.api gave, as the files hold it
    assert sorted(r.params["train.seed"] for r in found) == [0, 1, 2]  # the baseline and its two experiments
    (baseline,) = [r for r in found if r.baseline]
    assert baseline.metrics["vae"] == json.loads((ran_repo / "metrics/vae/evaluate.json").read_text())  # exactly
    assert isinstance(baseline.metrics["vae"]["active_units"], int) and isinstance(baseline.params["train.seed"], int)
    (group,) = summary.groups(found).values()
    ae, vae = ([r.metrics[m]["frechet_samples"] for r in group] for m in ("ae", "vae"))
    assert len(set(vae)) == 3  # each seed its own model
    assert f"| frechet_samples | {summary.mean_sd(ae)} | {summary.mean_sd(vae)} |" in out
    assert "n = 3" in out and "over train.seed" in out
