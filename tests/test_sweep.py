"""`python -m aevae.sweep` on a real Ray cluster: two one-CPU nodes on localhost, a bare git remote and a
folder DVC remote. The node that trains one experiment dies mid-run; Ray retries it on a fresh node.

Ray and pytest-xdist's workers do not mix, so these run in a pytest run of their own:
`python -m pytest -m ray -n 0` (the default run leaves them out)."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aevae import sweep
from helpers import env, needs_mnist, outputs, sh

def test_a_sweep_is_dvcs_product_and_names_each_experiment_by_its_params():
    points = sweep.sweeps(["vae.beta=2,4", "train.seed=range(0,2)"])
    assert points == [["vae.beta=2", "train.seed=0"], ["vae.beta=2", "train.seed=1"],
                      ["vae.beta=4", "train.seed=0"], ["vae.beta=4", "train.seed=1"]]
    assert [sweep.name(p) for p in points[:2]] == ["vae.beta-2_train.seed-0", "vae.beta-2_train.seed-1"]
    assert sweep.name(["model.hidden=[512, 256]"]) == "model.hidden-512-256"
    with pytest.raises(sweep.UserError, match="vae.beta=\\(2"):
        sweep.sweeps(["vae.beta=(2"])


def processes_in(prefix: str) -> dict[int, str]:
    """{pid: command line} of the processes whose working folder's name starts with `prefix`."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and os.readlink(proc / "cwd").rsplit("/", 1)[-1].startswith(prefix):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.05)


@pytest.mark.ray
@needs_mnist
def test_a_node_lost_mid_training_is_retried_into_the_same_bytes_and_one_ref(ran_repo, tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    repo, origin = ran_repo, tmp_path / "origin.git"
    sh(tmp_path, "git", "init", "-q", "--bare", str(origin))
    sh(repo, "dvc", "remote", "add", "-d", "store", str(tmp_path / "store"))
    sh(repo, "git", "commit", "-qam", "a DVC remote")
    sh(repo, "git", "remote", "add", "origin", str(origin))
    sh(repo, "git", "push", "-q", "origin", "HEAD")
    sh(repo, "dvc", "push", "-q")
    sh(repo, sys.executable, "-m", "aevae.runcache", "push")

    # The nodes' workers run what they inherit from this process: the venv's dvc, a git identity.
    for key, value in env(repo).items():
        if key.startswith("GIT_") or key in ("PATH", "MNIST_MIRROR", "DVC_NO_ANALYTICS"):
            monkeypatch.setenv(key, value)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    try:
        driver = subprocess.Popen([sys.executable, "-m", "aevae.sweep", "--address", cluster.address,
                                   "-S", "vae.beta=2,4"], cwd=repo, env=env(repo), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(driver.stdout), daemon=True)
        reader.start()
        wait_for(lambda: sum(line.startswith("started") for line in lines) == 2, 120, "both experiments to start")
        victim = "vae.beta-2"
        node_id = next(line.split()[4] for line in lines if line.startswith(f"started  {victim} "))
        node = next(n for n in nodes if n.node_id.startswith(node_id))
        clone = f"aevae-sweep-{victim}-"
        wait_for(lambda: any("stages/train.py vae" in c for c in processes_in(clone).values()), 120,
                 f"{victim} to train")
        cluster.remove_node(node, allow_graceful=False)
        # Its stages die with it, and its clone goes: nothing of the lost attempt lives on.
        wait_for(lambda: not processes_in(clone), 15, f"{victim}'s processes to die with their node")
        cluster.add_node(num_cpus=1)
        assert driver.wait(timeout=600) == 0, "".join(lines)
        reader.join()
    finally:
        cluster.shutdown()
    log = "".join(lines)
    assert f"retried  {victim} on node" in log and f"finished {victim}" in log and "finished vae.beta-4" in log
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob(f"{clone}*"))

    refs = sh(repo, "git", "ls-remote", str(origin), "refs/exps/*").split()[1::2]
    assert sorted(r.rsplit("/", 1)[1] for r in refs) == ["vae.beta-2", "vae.beta-4"]

    sh(repo, "dvc", "exp", "run", "-S", "vae.beta=2")  # the same params, here, never interrupted
    local = outputs(repo)
    sh(tmp_path, "git", "clone", "-q", str(origin), "b")
    b = tmp_path / "b"
    sh(b, "dvc", "exp", "pull", "origin", victim)
    sh(b, "dvc", "exp", "apply", victim)
    sh(b, "dvc", "pull", "-q")
    assert "Data and pipelines are up to date" in sh(b, "dvc", "status")
    assert outputs(b) == local
    for path in ("models/vae.pt", "metrics/vae/evaluate.json", "metrics/vae/train/metrics.json"):
        assert (b / path).read_bytes() == (repo / path).read_bytes(), path
