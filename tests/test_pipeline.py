"""The real `dvc repro` on real MNIST, in a throwaway copy of this repository, with a tiny config."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import MNIST, ROOT, needs_mnist

FILES = ["dvc.yaml", "params.yaml", "stages", "src", ".gitignore", ".dvcignore"]
PNGS = ["samples.png", "reconstructions.png", "losses.png"]


@pytest.fixture
def repo(tmp_path, raw_params):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in FILES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, repo / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    raw_params["data"]["train_size"] = 1000
    raw_params["train"]["epochs"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    return repo


def sh(repo, *args):
    env = dict(
        os.environ,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        PYTHONPATH=str(repo / "src"),  # the copy's code, not the installed checkout's
        MNIST_MIRROR=str(MNIST),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )
    run = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def ran(log):
    return {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}


@needs_mnist
def test_repro_then_change_vae_beta(repo):
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "pipeline")

    log = sh(repo, "dvc", "repro")
    assert ran(log) == {"fetch", "train_ae", "train_vae", "evaluate", "render"}
    for name in PNGS:
        png = (repo / "plots/images" / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, name

    (shown,) = [rev["data"] for rev in json.loads(sh(repo, "dvc", "metrics", "show", "--json")).values()]
    ae, vae = shown["metrics/ae.json"]["data"], shown["metrics/vae.json"]["data"]
    evaluate = shown["metrics/evaluate.json"]["data"]
    assert ae["epochs"] == vae["epochs"] == 1
    assert ae["train_kl"] == 0 < vae["test_kl"]
    assert set(evaluate) == {"ae", "vae"} and set(evaluate["vae"]) == {"mse", "bce", "kl", "loss"}
    assert evaluate["vae"]["loss"] == pytest.approx(evaluate["vae"]["mse"] + evaluate["vae"]["kl"])
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
