"""The real `dvc repro` on real MNIST, in a throwaway copy of this repository, with a tiny config."""

import json
import math
import shutil
import struct
import subprocess

import pytest
import yaml

from helpers import OUTPUT_DIRS, env, needs_mnist, outputs, ran, sh

# Each figure's size in pixels (width, height) at 100 dpi, which its panels and rows set: a panel of samples
# per model; a row of 20 test images, then one per model; a row of 12 per model and digit pair (5).
PNGS = {"samples.png": (2 * 420, 460), "reconstructions.png": (20 * 60 + 160, 3 * 80 + 60),
        "interpolations.png": (12 * 60 + 160, 2 * 5 * 80 + 60), "latent.png": (1200, 540), "losses.png": (1500, 420)}


def png_size(path) -> tuple[int, int]:
    """A PNG's width and height, from its header."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    return struct.unpack(">II", data[16:24])


def assert_metrics_load(repo, command):
    """DVC calls a revision failed when its metrics hold a key named `error` anywhere; none does."""
    run = subprocess.run(["dvc", "metrics", command], cwd=repo, env=env(repo), capture_output=True, text=True)
    assert run.returncode == 0 and "failed to load" not in run.stderr + run.stdout, run.stderr


@needs_mnist
def test_repro_runs_every_stage_and_writes_every_output(ran_repo, ran_log):
    assert ran(ran_log) == {"fetch", "train_ae", "train_vae", "train_classifier", "evaluate@ae", "evaluate@vae", "render"}
    assert {name: png_size(ran_repo / "plots/images" / name) for name in PNGS} == PNGS

    (shown,) = [rev["data"] for rev in json.loads(sh(ran_repo, "dvc", "metrics", "show", "--json")).values()]
    assert_metrics_load(ran_repo, "show")
    metric = {path.removeprefix("metrics/").removesuffix(".json"): m["data"] for path, m in shown.items()}
    assert set(metric) == {f"{kind}/{what}" for kind in ("ae", "vae", "classifier")
                           for what in ("train/metrics", "time")} | {f"{kind}/evaluate{what}" for kind in ("ae", "vae")
                                                                    for what in ("", "_time")}
    ae_train, vae_train = metric["ae/train/metrics"], metric["vae/train/metrics"]  # DVCLive's summaries
    assert ae_train["step"] == vae_train["step"] == 1  # the epochs
    assert ae_train["train"]["kl"] == 0 < vae_train["test"]["kl"]
    assert all(m["train_seconds"] > 0 for name, m in metric.items() if name.endswith("/time"))
    # evaluate's wall time, the importance sampling apart: the AE has none
    assert metric["ae/evaluate_time"]["nll_is_seconds"] == 0 < metric["vae/evaluate_time"]["nll_is_seconds"]
    assert all(metric[f"{kind}/evaluate_time"]["rest_seconds"] > 0 for kind in ("ae", "vae"))
    ae, vae = metric["ae/evaluate"], metric["vae/evaluate"]
    common = {"mse", "bce", "loss", "recon", "active_units", "probe_accuracy", "frechet_samples", "confident_samples",
              "frechet_reconstructions", "classifier_accuracy_reconstructions"}
    assert set(ae) == common
    assert set(vae) == common | {"kl", "nelbo_gaussian", "nll_is_gaussian", "nll_samples"} and vae["nll_samples"] == 10
    assert vae["loss"] == pytest.approx(vae["mse"] + vae["kl"]) and vae["recon"] == vae["mse"]  # gaussian
    for kind, m in (("ae", ae), ("vae", vae)):  # a point per run for the scatter plots
        (point,) = json.loads((ran_repo / f"plots/{kind}/point.json").read_text())
        assert point == {"model": kind, "rate": m.get("kl"), "distortion": m["recon"],
                         "frechet_samples": m["frechet_samples"]}
    assert vae["nll_is_gaussian"] < vae["nelbo_gaussian"]
    scorer = metric["classifier/train/metrics"]
    assert 0 < scorer["frechet_train_set"] < vae["frechet_samples"]
    assert scorer["test"]["accuracy"] == 1 - scorer["test"]["misclassified"] > 0.5  # 2000 images, 1 epoch; chance is 0.1
    curve = (ran_repo / "metrics/vae/train/plots/metrics/test/kl.tsv").read_text()
    assert curve == f"step\tkl\n1\t{vae_train['test']['kl']}\n"


@needs_mnist
def test_an_experiment_reruns_only_what_its_params_reach(ran_repo):
    ae_metrics = (ran_repo / "metrics/ae/evaluate.json").read_bytes()
    log = sh(ran_repo, "dvc", "exp", "run", "-S", "vae.beta=4")
    assert ran(log) == {"train_vae", "evaluate@vae", "render"}
    assert "Stage 'train_ae' didn't change, skipping" in log

    params = json.loads(sh(ran_repo, "dvc", "params", "diff", "--json"))
    assert params == {"params.yaml": {"vae.beta": {"old": 1.0, "new": 4, "diff": 3.0}}}
    metrics = json.loads(sh(ran_repo, "dvc", "metrics", "diff", "--json"))
    assert {"metrics/vae/train/metrics.json", "metrics/vae/evaluate.json"} <= set(metrics)
    for command in ("show", "diff"):
        assert_metrics_load(ran_repo, command)
    assert not any(path.startswith("metrics/ae/") for path in metrics)
    assert (ran_repo / "metrics/ae/evaluate.json").read_bytes() == ae_metrics
    assert not (ran_repo / "plots/images/manifold.png").exists()  # z = 50 here: tests/test_figures.py draws one


@needs_mnist
@pytest.mark.parametrize("options, expected", [
    # the conv networks, the continuous Bernoulli, and a 2-D latent space: the exact NLL by quadrature
    (["model.arch=conv", "vae.likelihood=continuous_bernoulli", "model.z_dim=2", "evaluate.quadrature_step=0.25"],
     {"nelbo_continuous_bernoulli", "nll_is_continuous_bernoulli", "nll_quadrature_continuous_bernoulli",
      "quadrature_change_at_half_step", "quadrature_edge_to_peak", "is_gap_mean", "is_gap_sd_of_mean",
      "is_gap_over_10_nats", "is_gap_below_noise"}),
    # the IWAE objective and KL warm-up, on the literature's binarised digits
    (["vae.iwae_samples=3", "vae.kl_warmup_epochs=2", "train.epochs=2", "vae.likelihood=bernoulli",
      "data.binarize=dynamic"], {"nelbo_bernoulli", "nll_is_bernoulli"}),
    # both autoencoders trained with bf16 matmuls (emulated, and slow, on a CPU without AVX-512 BF16 or AMX)
    (["train.precision=bf16"], {"nelbo_gaussian", "nll_is_gaussian"}),
])
def test_each_new_option_runs_as_an_experiment_with_finite_metrics(ran_repo, options, expected):
    sh(ran_repo, "dvc", "exp", "run", *(arg for o in options for arg in ("-S", o)))
    vae = json.loads((ran_repo / "metrics/vae/evaluate.json").read_text())
    assert expected <= set(vae) and all(math.isfinite(v) for v in vae.values())
    log = json.loads((ran_repo / "metrics/vae/train/metrics.json").read_text())
    assert all(math.isfinite(v) for split in ("train", "test") for v in log[split].values())
    assert png_size(ran_repo / "plots/images/samples.png") == PNGS["samples.png"]


@needs_mnist
def test_a_second_run_from_scratch_gives_the_same_bytes(ran_repo):
    first = outputs(ran_repo)
    assert {"models/ae.pt", "models/vae.pt", "plots/images", "metrics/vae/evaluate.json"} <= set(first)
    for top in OUTPUT_DIRS:
        shutil.rmtree(ran_repo / top)
    sh(ran_repo, "dvc", "repro", "--force")  # every stage again, from nothing
    assert outputs(ran_repo) == first


@needs_mnist
def test_a_forced_retrain_that_gives_the_same_bytes_leaves_the_rest_up_to_date(ran_repo):
    log = sh(ran_repo, "dvc", "repro", "--force", "--single-item", "train_vae")
    assert ran(log) == {"train_vae"}
    assert "Data and pipelines are up to date" in sh(ran_repo, "dvc", "status")
    # At most the wall time moved, and the lock's record of it (a retrain fast enough can give the same
    # rounded time): every result is as it was.
    assert set(sh(ran_repo, "git", "status", "--porcelain").splitlines()) <= {" M dvc.lock", " M metrics/vae/time.json"}
    assert "train_seconds" in (ran_repo / "metrics/vae/time.json").read_text()
    old = yaml.safe_load(sh(ran_repo, "git", "show", "HEAD:dvc.lock"))
    new = yaml.safe_load((ran_repo / "dvc.lock").read_text())
    for lock in old, new:
        lock["stages"]["train_vae"]["outs"] = [o for o in lock["stages"]["train_vae"]["outs"]
                                               if o["path"] != "metrics/vae/time.json"]
    assert old == new
