"""The real `dvc repro` on real MNIST, in a throwaway copy of this repository, with a tiny config."""

import csv
import json

import pytest
import yaml

from conftest import needs_mnist, sh

PNGS = ["samples.png", "reconstructions.png", "interpolations.png", "latent.png", "losses.png"]


def ran(log):
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}


@needs_mnist
def test_repro_then_change_vae_beta(repo):
    log = sh(repo, "dvc", "repro")
    assert ran(log) == {"fetch", "train_ae", "train_vae", "train_classifier", "evaluate", "render"}
    for name in PNGS:
        png = (repo / "plots/images" / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, name

    (shown,) = [rev["data"] for rev in json.loads(sh(repo, "dvc", "metrics", "show", "--json")).values()]
    ae, vae = shown["metrics/ae.json"]["data"], shown["metrics/vae.json"]["data"]
    evaluate = shown["metrics/evaluate.json"]["data"]
    assert ae["epochs"] == vae["epochs"] == 1
    assert ae["train_kl"] == 0 < vae["test_kl"]
    assert set(evaluate) == {"ae", "vae", "train_set", "iw_samples"} and evaluate["iw_samples"] == 10
    common = {"mse", "bce", "loss", "active_units", "probe_accuracy", "frechet_samples", "confident_samples",
              "frechet_reconstructions", "classifier_accuracy_reconstructions"}
    assert set(evaluate["ae"]) == common
    assert set(evaluate["vae"]) == common | {"kl", "nelbo_gaussian", "nll_is_gaussian"}
    assert evaluate["vae"]["loss"] == pytest.approx(evaluate["vae"]["mse"] + evaluate["vae"]["kl"])
    assert evaluate["vae"]["nll_is_gaussian"] < evaluate["vae"]["nelbo_gaussian"]
    assert 0 < evaluate["train_set"]["frechet"] < evaluate["vae"]["frechet_samples"]
    assert shown["metrics/classifier.json"]["data"]["test_accuracy"] > 0.5  # 2000 images, 1 epoch; chance is 0.1
    losses = (repo / "plots/vae/losses.csv").read_text().splitlines()
    assert losses[0] == "epoch,train_loss,test_loss,train_recon,test_recon,train_kl,test_kl,seconds"
    assert len(losses) == 2

    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run")
    log = sh(repo, "dvc", "exp", "run", "-S", "vae.beta=4")
    assert ran(log) == {"train_vae", "evaluate", "render"}
    assert "Stage 'train_ae' didn't change, skipping" in log

    params = json.loads(sh(repo, "dvc", "params", "diff", "--json"))
    assert params == {"params.yaml": {"vae.beta": {"old": 1.0, "new": 4, "diff": 3.0}}}
    metrics = json.loads(sh(repo, "dvc", "metrics", "diff", "--json"))
    assert "metrics/vae.json" in metrics and "metrics/ae.json" not in metrics
    assert not (repo / "plots/images/manifold.png").exists()

    log = sh(repo, "dvc", "exp", "run", "-S", "model.z_dim=2")
    assert ran(log) == {"train_ae", "train_vae", "evaluate", "render"}
    assert (repo / "plots/images/manifold.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def outputs(repo):
    """Every output, as bytes or numbers, wall-time fields left out."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    hashes = {  # metrics and curves hold wall times: compared below without them
        o["path"]: o["md5"]
        for stage in lock["stages"].values()
        for o in stage["outs"]
        if not (o["path"].startswith("metrics/") or o["path"].endswith(".csv"))
    }
    figures = {p.name: p.read_bytes() for p in (repo / "plots/images").iterdir()}
    metrics = {p.name: json.loads(p.read_text()) for p in (repo / "metrics").iterdir()}
    for m in metrics.values():
        m.pop("train_seconds", None)
    curves = {}
    for kind in ("ae", "vae", "classifier"):
        with open(repo / f"plots/{kind}/losses.csv") as f:
            curves[kind] = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
    return hashes, figures, metrics, curves


@needs_mnist
def test_two_runs_from_scratch_give_the_same_bytes(repo):
    sh(repo, "dvc", "repro")
    first = outputs(repo)
    assert {"models/ae.pt", "models/vae.pt", "plots/images"} <= set(first[0])
    sh(repo, "dvc", "repro", "--force")  # every stage again, outputs removed first
    assert outputs(repo) == first
