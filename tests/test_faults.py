"""Failures lose nothing: killed or failing stages, a killed `dvc repro`, experiments in parallel."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, env, needs_mnist, sh
from test_data import idx_bytes
from test_pipeline import ran

OUTPUTS = ["models/vae.pt", "plots/vae/losses.csv", "metrics/vae.json"]


@pytest.fixture
def workdir(tmp_path, raw_params):
    """A folder to run stages/train.py in directly: synthetic MNIST-shaped data and a tiny config."""
    rng = np.random.default_rng(0)
    mnist = tmp_path / "data/mnist"
    mnist.mkdir(parents=True)
    for prefix, n in (("train", 2000), ("t10k", 200)):
        (mnist / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(rng.integers(0, 256, (n, 28, 28))))
        (mnist / f"{prefix}-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, n)))
    raw_params["data"]["train_size"] = 2000
    raw_params["train"]["epochs"] = 1
    raw_params["model"]["hidden_dims"] = [64, 32]
    write_params(tmp_path, raw_params)
    return tmp_path


def write_params(folder, raw):
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def train(folder, wait=True):
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "vae"]
    e = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    if wait:
        return subprocess.run(cmd, cwd=folder, env=e, capture_output=True, text=True)
    return subprocess.Popen(cmd, cwd=folder, env=e, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def snapshot(folder):
    """Every file under the output folders, by path: stray temporaries show up too."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for top in ("models", "plots", "metrics")
        for p in sorted((folder / top).rglob("*"))
        if p.is_file()
    }


def test_a_stage_killed_mid_epoch_leaves_the_previous_outputs(workdir, raw_params):
    assert train(workdir).returncode == 0
    before = snapshot(workdir)
    assert sorted(before) == sorted(OUTPUTS)

    raw_params["train"].update(epochs=50, seed=1)
    write_params(workdir, raw_params)
    proc = train(workdir, wait=False)
    assert "VAE epoch 1/50" in proc.stdout.readline()  # one epoch done, the next under way
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(workdir) == before

    raw_params["train"].update(epochs=2)
    write_params(workdir, raw_params)
    assert train(workdir).returncode == 0  # and it runs again to the end
    after = snapshot(workdir)
    assert sorted(after) == sorted(OUTPUTS) and after != before


def test_a_diverging_stage_says_where_and_writes_nothing(workdir, raw_params):
    assert train(workdir).returncode == 0
    before = snapshot(workdir)
    raw_params["train"]["lr"] = 1e6
    write_params(workdir, raw_params)
    run = train(workdir)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged in epoch 1, step ") and "try a smaller train.lr" in last
    assert snapshot(workdir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_exits_2_and_writes_nothing(workdir, raw_params):
    raw_params["train"]["device"] = "cuda"
    write_params(workdir, raw_params)
    run = train(workdir)
    assert run.returncode == 2
    assert run.stderr == "error: train.device = 'cuda' but no CUDA GPU is available here; accepted: auto or cpu\n"
    assert snapshot(workdir) == {}


@needs_mnist
def test_a_killed_dvc_repro_keeps_the_lock_and_checkout_restores_everything(repo):
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run")
    lock = (repo / "dvc.lock").read_bytes()
    before = snapshot(repo)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["epochs"] = 50  # train_ae runs first, and long
    write_params(repo, params)
    proc = subprocess.Popen(
        ["dvc", "repro"], cwd=repo, env=dict(env(repo), PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    for line in proc.stdout:  # let training get under way, then kill dvc and the stage with it
        if "AE epoch 1/50" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert (repo / "dvc.lock").read_bytes() == lock
    left = snapshot(repo)
    assert set(left) <= set(before), "a partial or temporary file was left behind"
    assert all(left[p] == before[p] for p in left)  # what is there is the last good run's

    sh(repo, "git", "checkout", "--", "params.yaml", "metrics", "plots")
    sh(repo, "dvc", "checkout")
    assert snapshot(repo) == before
    assert "Data and pipelines are up to date" in sh(repo, "dvc", "status")

    params["train"]["epochs"] = 2  # the change again, short enough to finish
    write_params(repo, params)
    assert ran(sh(repo, "dvc", "repro")) == {"train_ae", "train_vae", "evaluate", "render"}


@needs_mnist
def test_queued_experiments_run_in_parallel(repo):
    sh(repo, "dvc", "repro")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "run")
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "vae.beta=2", "-n", "beta2")
    sh(repo, "dvc", "exp", "run", "--queue", "-S", "model.z_dim=8", "-n", "z8")
    # One thread each: two jobs on two cores, each spinning two OpenMP threads, would crawl.
    one_thread = dict(env(repo), OMP_NUM_THREADS="1")
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=repo, env=one_thread, check=True, capture_output=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh(repo, "dvc", "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    logs = [sh(repo, "dvc", "queue", "logs", name) for name in ("beta2", "z8")] if "Failed" in status else []
    assert "Failed" not in status, status + "".join(logs)

    shown = json.loads(sh(repo, "dvc", "exp", "show", "--json"))
    exps = {
        e["name"]: e["revs"][0]["data"]
        for baseline in shown
        for e in (baseline.get("experiments") or [])
    }
    assert set(exps) == {"beta2", "z8"}
    assert exps["beta2"]["params"]["params.yaml"]["data"]["vae"]["beta"] == 2
    assert exps["z8"]["params"]["params.yaml"]["data"]["model"]["z_dim"] == 8
    vae = {name: e["metrics"]["metrics/vae.json"]["data"] for name, e in exps.items()}
    assert vae["beta2"]["test_loss"] != vae["z8"]["test_loss"]  # each kept its own results
    assert all(v["epochs"] == 1 for v in vae.values())
