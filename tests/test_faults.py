"""Failures lose nothing: killed or failing stages, mistakes in params, a killed `dvc repro`, experiments in parallel."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import ROOT, env, fails, idx_bytes, needs_mnist, ran, read_params, sh, snapshot, write_params

LOG = "metrics/vae/train"  # DVCLive's folder (aevae.trainer)
OUTPUTS = ["models/vae.pt", "metrics/vae/time.json", f"{LOG}/metrics.json"] + [
    f"{LOG}/plots/metrics/{split}/{term}.tsv" for split in ("train", "test") for term in ("loss", "recon", "kl")] + [
    f"{LOG}/plots/metrics/kl_weight.tsv"]


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


def train(folder, wait=True):
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "vae"]
    e = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    if wait:
        return subprocess.run(cmd, cwd=folder, env=e, capture_output=True, text=True)
    return subprocess.Popen(cmd, cwd=folder, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def logged(folder) -> dict:
    """The DVCLive summary in folder (its `step` is the epoch); {} while there is none."""
    try:
        return json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):  # not there yet, or being written
        return {}


def but(files: dict, prefix: str) -> dict:
    return {path: data for path, data in files.items() if not path.startswith(prefix)}


def kill_when(proc, done):
    """SIGKILL proc (and its process group) once done() holds; fail if the process ended first."""
    while not done():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before it could be killed")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL


def test_a_stage_killed_mid_epoch_leaves_the_previous_model_and_its_own_partial_log(workdir, raw_params):
    assert train(workdir).returncode == 0
    before = snapshot(workdir)
    assert sorted(before) == sorted(OUTPUTS)

    raw_params["train"].update(epochs=50, seed=1)
    write_params(workdir, raw_params)
    proc = train(workdir, wait=False)
    old = logged(workdir / LOG)
    kill_when(proc, lambda: logged(workdir / LOG) not in ({}, old))  # an epoch of the new run logged
    after = snapshot(workdir)
    assert but(after, LOG) == but(before, LOG)  # the model and its time as they were
    assert 1 <= logged(workdir / LOG)["step"] < 50  # the log: what the killed run got through

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
def test_a_typo_or_a_failed_stage_then_the_fix_brings_every_byte_back_from_the_run_cache(ran_repo):
    params = read_params(ran_repo)
    params["render"]["seed"] = 1
    write_params(ran_repo, params)
    assert ran(sh(ran_repo, "dvc", "repro")) == {"render"}  # a run not committed: its PNGs are in no git commit
    before = snapshot(ran_repo)

    typo = read_params(ran_repo)
    typo["vae"]["betta"] = typo["vae"].pop("beta")
    write_params(ran_repo, typo)
    error = fails(ran_repo, "dvc", "repro")
    assert "error: params.yaml: unknown key 'vae.betta'; did you mean 'vae.beta'?" in error

    for change, message in [("train.epochs=0", "train.epochs = 0 is not accepted"),  # the params check
                            # a renamed key: DVC refuses to set a key params.yaml lacks, and one added anyway
                            ("vae.iw_samples=1000", "Could not override 'vae.iw_samples'"),  # (Hydra's '+')
                            ("+vae.iw_samples=1000", "unknown key 'vae.iw_samples'; did you mean 'vae.iwae_samples'?"),
                            ("train.lr=1e6", "training diverged")]:  # in training, last: it removes train_ae's outs
        write_params(ran_repo, params)  # `dvc exp run -S` leaves its change in params.yaml
        assert message in fails(ran_repo, "dvc", "exp", "run", "-S", change)

    write_params(ran_repo, params)  # the mistake undone: DVC's run-cache has every output of the last run
    log = sh(ran_repo, "dvc", "repro")
    assert ran(log) == set(), log  # nothing trained, nothing evaluated, nothing rendered
    assert "Stage 'train_ae' is cached - skipping run, checking out outputs" in log  # removed when it failed
    assert snapshot(ran_repo) == before
    assert "Data and pipelines are up to date" in sh(ran_repo, "dvc", "status")


@needs_mnist
def test_params_that_ran_before_bring_their_outputs_back_from_the_run_cache_without_training(ran_repo):
    before = snapshot(ran_repo)
    assert ran(sh(ran_repo, "dvc", "exp", "run", "-S", "vae.beta=2")) == {"train_vae", "evaluate@vae", "render"}
    assert snapshot(ran_repo)["models/vae.pt"] != before["models/vae.pt"]
    run = subprocess.run(["dvc", "exp", "run", "-S", "vae.beta=1.0"], cwd=ran_repo, env=env(ran_repo),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert ran(run.stdout) == set() and "epoch 1:" not in run.stderr  # no stage ran, no epoch was trained
    for stage in ("train_vae", "evaluate@vae", "render"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in run.stdout
    assert snapshot(ran_repo) == before  # the model, DVCLive's log, the metrics and the PNGs: every byte


@needs_mnist
def test_a_killed_dvc_repro_keeps_the_lock_and_git_with_dvc_checkout_restore_the_run(ran_repo):
    before = snapshot(ran_repo)
    params = read_params(ran_repo)
    params["train"]["epochs"] = 50  # train_ae runs first, and long
    write_params(ran_repo, params)
    proc = subprocess.Popen(["dvc", "repro"], cwd=ran_repo, env=env(ran_repo), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # Epoch 2 logged (the committed run has 1): training under way. Kill dvc and the stage with it.
    kill_when(proc, lambda: logged(ran_repo / "metrics/ae/train").get("step", 0) >= 2)

    after = snapshot(ran_repo)
    assert after != before  # DVC removed train_ae's outputs before the stage ran; the partial log is there
    assert after["dvc.lock"] == before["dvc.lock"]  # and the lock still describes the last finished run
    sh(ran_repo, "git", "checkout", "--", ".")  # params.yaml, and the log: DVC keeps it in git (cache: false)
    sh(ran_repo, "dvc", "checkout")
    assert snapshot(ran_repo) == before
    assert "Data and pipelines are up to date" in sh(ran_repo, "dvc", "status")

    params["train"]["epochs"] = 2  # the change again, short enough to finish
    write_params(ran_repo, params)
    assert ran(sh(ran_repo, "dvc", "repro")) == {"train_ae", "train_vae", "evaluate@ae", "evaluate@vae", "render"}


@needs_mnist
def test_a_queued_sweep_runs_in_parallel_and_keeps_each_points_results(ran_repo):
    sh(ran_repo, "dvc", "exp", "run", "--queue", "-S", "vae.beta=2,4")  # DVC's sweep syntax: two points
    # No thread settings needed: each stage runs $AEVAE_THREADS (1, tests/conftest.py) torch threads.
    sh(ran_repo, "dvc", "queue", "start", "-j", "2")
    deadline = time.time() + 300
    while time.time() < deadline:
        status = sh(ran_repo, "dvc", "queue", "status")
        if "Running" not in status and "Queued" not in status:
            break
        time.sleep(2)
    assert "Failed" not in status and status.count("Success") == 2, status

    shown = json.loads(sh(ran_repo, "dvc", "exp", "show", "--json"))
    points = [e["revs"][0]["data"] for baseline in shown for e in (baseline.get("experiments") or [])]
    betas = sorted(e["params"]["params.yaml"]["data"]["vae"]["beta"] for e in points)
    assert betas == [2, 4]
    results = [e["metrics"]["metrics/vae/evaluate.json"]["data"] for e in points]
    assert results[0]["kl"] != results[1]["kl"]  # each point kept its own results
    assert all(e["metrics"]["metrics/ae/evaluate.json"]["data"] == points[0]["metrics"]["metrics/ae/evaluate.json"]["data"]
               for e in points)  # and the AE, which beta does not reach, is the baseline's


def exp_show(repo):
    """`dvc exp show --json`, or None while a starting executor makes it fail (its folder half set up)."""
    run = subprocess.run(["dvc", "exp", "show", "--json"], cwd=repo, env=env(repo), capture_output=True, text=True)
    return json.loads(run.stdout) if run.returncode == 0 else None


@needs_mnist
def test_dvc_exp_show_follows_a_queued_run_epoch_by_epoch(ran_repo):
    sh(ran_repo, "dvc", "exp", "run", "--queue", "-n", "long", "-S", "train.epochs=100")
    # Not sh: the worker it starts would hold captured pipes open, and sh would wait for it to end.
    subprocess.run(["dvc", "queue", "start"], cwd=ran_repo, env=env(ran_repo), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    try:
        deadline, step = time.time() + 120, 0
        while time.time() < deadline and step < 2:
            time.sleep(1)
            shown = exp_show(ran_repo)
            if shown is None:  # the executor's folder is still being set up
                continue
            runs = [e for b in shown for e in (b.get("experiments") or []) if e["name"] == "long"]
            if len(runs) != 1:  # for a moment DVC lists the run twice: in the queue and at its executor
                continue
            (run,) = runs
            metrics = run["revs"][0]["data"]["metrics"].get("metrics/ae/train/metrics.json") or {}
            step = metrics.get("data", {}).get("step", 0)
        assert run["executor"]["state"] == "running"
        assert step >= 2  # epochs logged by a run still under way (its committed baseline has 1)
    finally:
        sh(ran_repo, "dvc", "queue", "kill", "long")


def md5s(folder) -> dict[str, str]:
    """The model, the DVCLive log and the summary's bytes, by path; wall times apart."""
    return {path: hashlib.md5(data).hexdigest() for path, data in snapshot(folder).items()
            if not path.endswith("time.json")}


def run_stage(folder, *stage, wait=True, stderr=subprocess.DEVNULL):
    cmd = [sys.executable, str(ROOT / "stages" / stage[0]), *stage[1:]]
    e = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    if wait:
        return subprocess.run(cmd, cwd=folder, env=e, capture_output=True, text=True)
    return subprocess.Popen(cmd, cwd=folder, env=e, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def slow_epochs(raw_params, epochs):
    """Epochs of about a second on the synthetic data, long enough to be killed in."""
    raw_params["train"].update(epochs=epochs, batch_size=8)
    raw_params["classifier"].update(epochs=epochs, batch_size=8, train_size=2000)


@pytest.mark.parametrize("stage, log", [(["train.py", "vae"], "metrics/vae/train"),
                                        (["train_classifier.py"], "metrics/classifier/train")])
def test_a_training_killed_in_epoch_3_resumes_there_to_the_same_bytes(workdir, raw_params, tmp_path, stage, log):
    slow_epochs(raw_params, 6)
    write_params(workdir, raw_params)
    whole = tmp_path / "whole"
    shutil.copytree(workdir, whole)
    assert run_stage(whole, *stage).returncode == 0
    assert not (whole / "checkpoints").exists()  # a finished run leaves no trace of it

    proc = run_stage(workdir, *stage, wait=False)
    kill_when(proc, lambda: logged(workdir / log).get("step", 0) >= 2)  # in epoch 3 (or, at worst, 4)
    assert any((workdir / "checkpoints").iterdir())
    rerun = run_stage(workdir, *stage)
    assert rerun.returncode == 0, rerun.stderr
    assert re.search(r"resuming from epoch [34] of 6", rerun.stderr)
    assert "epoch 1:" not in rerun.stderr  # tqdm's bar of each epoch it trains
    assert md5s(workdir) == md5s(whole)
    assert not (workdir / "checkpoints").exists()


def test_a_checkpoint_from_other_params_or_a_torn_one_is_discarded_with_one_line(workdir, raw_params):
    slow_epochs(raw_params, 40)
    write_params(workdir, raw_params)
    proc = run_stage(workdir, "train.py", "vae", wait=False)
    kill_when(proc, lambda: logged(workdir / LOG).get("step", 0) >= 1)
    raw_params["train"]["epochs"] = 2
    write_params(workdir, raw_params)
    (checkpoint,) = (workdir / "checkpoints").iterdir()
    kept = checkpoint.read_bytes()
    run = run_stage(workdir, "train.py", "vae")
    assert run.returncode == 0
    assert f"checkpoints/vae.pt: made with other params, code or data; discarded, training from epoch 1" in run.stderr
    assert "resuming" not in run.stderr and logged(workdir / LOG)["step"] == 2

    checkpoint.parent.mkdir(exist_ok=True)  # the finished run removed it
    checkpoint.write_bytes(kept[: len(kept) // 2])  # torn: as a full disk could leave a file not written atomically
    run = run_stage(workdir, "train.py", "vae")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    assert "checkpoints/vae.pt: unreadable (" in run.stderr and "discarded, training from epoch 1" in run.stderr


def test_a_kill_in_the_first_epoch_leaves_the_previous_log(workdir, raw_params):
    assert run_stage(workdir, "train.py", "vae").returncode == 0
    before = snapshot(workdir)
    slow_epochs(raw_params, 3)
    write_params(workdir, raw_params)
    with open(workdir / "stderr", "w+") as err:
        proc = run_stage(workdir, "train.py", "vae", wait=False, stderr=err)
        kill_when(proc, lambda: "epoch 1:" in (workdir / "stderr").read_text())  # tqdm's bar: training began
    assert "step" not in logged(workdir / LOG) or logged(workdir / LOG)["step"] == 1  # still the old log
    assert snapshot(workdir) == before  # DVCLive has not emptied the log: no epoch had ended


@needs_mnist
def test_dvc_repro_killed_in_epoch_3_resumes_to_the_bytes_of_a_run_never_stopped(ran_repo, tmp_path):
    params = read_params(ran_repo)
    params["train"].update(epochs=6, batch_size=8)  # epochs long enough to be killed in
    write_params(ran_repo, params)
    whole = tmp_path / "whole"
    shutil.copytree(ran_repo, whole, symlinks=True)
    sh(whole, "dvc", "repro", "-s", "train_vae")

    proc = subprocess.Popen(["dvc", "repro", "-s", "train_vae"], cwd=ran_repo, env=env(ran_repo),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    kill_when(proc, lambda: logged(ran_repo / LOG).get("step", 0) >= 2)
    log = subprocess.run(["dvc", "repro", "-s", "train_vae"], cwd=ran_repo, env=env(ran_repo), capture_output=True,
                         text=True)
    assert log.returncode == 0, log.stderr
    assert re.search(r"checkpoints/vae\.pt: resuming from epoch [34] of 6", log.stderr)
    assert "epoch 1:" not in log.stderr
    files = ["models/vae.pt", f"{LOG}/metrics.json", *(f"{LOG}/plots/metrics/{s}/{t}.tsv" for s in ("train", "test")
                                                      for t in ("loss", "recon", "kl"))]
    assert {f: (ran_repo / f).read_bytes() for f in files} == {f: (whole / f).read_bytes() for f in files}
    assert not (ran_repo / "checkpoints").exists()
