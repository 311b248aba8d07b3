"""Two clones stand for two machines, sharing a bare git remote and a DVC remote (a local folder, or a
real SSH server on localhost): an experiment run on one reaches the other, models included, with no retraining."""

import getpass
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from helpers import env, needs_mnist, sh


@needs_mnist
def test_an_experiment_pushed_from_one_clone_is_pulled_whole_into_another(ran_repo, tmp_path):
    a = ran_repo
    sh(tmp_path, "git", "init", "-q", "--bare", "origin.git")
    sh(a, "dvc", "remote", "add", "-d", "store", str(tmp_path / "store"))
    sh(a, "git", "commit", "-qam", "a DVC remote")
    sh(a, "git", "remote", "add", "origin", str(tmp_path / "origin.git"))
    sh(a, "git", "push", "-q", "origin", "HEAD:main")
    sh(a, "dvc", "push", "-q")

    sh(a, "dvc", "exp", "run", "-n", "beta4", "-S", "vae.beta=4")
    sh(a, "dvc", "exp", "push", "origin", "beta4")
    shown_a = json.loads(sh(a, "dvc", "metrics", "show", "--json"))

    sh(tmp_path, "git", "clone", "-q", "-b", "main", str(tmp_path / "origin.git"), "b")
    b = tmp_path / "b"
    sh(b, "dvc", "exp", "pull", "origin", "beta4")
    sh(b, "dvc", "exp", "apply", "beta4")
    sh(b, "dvc", "pull", "-q")
    assert "Data and pipelines are up to date" in sh(b, "dvc", "status")  # nothing to retrain
    assert json.loads(sh(b, "dvc", "metrics", "show", "--json")) == shown_a

    code = (  # the README's recipe: the workspace's model, and main's through dvc.api
        "import dvc.api; from aevae import model\n"
        "print(model.load('models/vae.pt').settings.beta)\n"
        "with dvc.api.open('models/vae.pt', rev='main', mode='rb') as f: print(model.load(f).settings.beta)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=b, env=env(b), capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["4.0", "1.0"]


@pytest.fixture
def sshd(tmp_path):
    """A real OpenSSH server on localhost, with a throw-away host key and user key: (port, user key)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or os.geteuid() != 0:
        pytest.skip("needs OpenSSH's sshd (Debian: openssh-server) and root to start it on a free port")
    folder = tmp_path / "sshd"
    folder.mkdir()
    for name in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", folder / name], check=True)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (folder / "config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}", f"PidFile {folder / 'pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PasswordAuthentication no", "PermitRootLogin yes",
        "StrictModes no", "UsePAM no", "Subsystem sftp internal-sftp"]) + "\n")
    os.makedirs("/run/sshd", exist_ok=True)  # its privilege-separation folder
    server = subprocess.Popen([sshd, "-D", "-e", "-f", folder / "config"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if server.poll() is not None:
            pytest.skip(f"sshd could not start: {server.stderr.read().decode().strip()[-300:]}")
        time.sleep(0.1)
    yield port, folder / "user_key"
    server.kill()
    server.wait()


def lock_md5s(repo):
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage["outs"]
            if o["path"].startswith(("models/", "data/"))}


@needs_mnist
def test_models_go_through_a_real_ssh_remote_and_a_killed_push_completes_when_rerun(ran_repo, tmp_path, sshd):
    port, key = sshd
    a, store = ran_repo, tmp_path / "store"
    sh(a, "dvc", "remote", "add", "-d", "ssh", f"ssh://{getpass.getuser()}@127.0.0.1:{port}{store}")
    sh(a, "dvc", "remote", "modify", "--local", "ssh", "keyfile", str(key))
    sh(a, "git", "commit", "-qam", "an SSH remote")

    push = subprocess.Popen(["dvc", "push"], cwd=a, env=env(a), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and push.poll() is None and not list(store.rglob("*/*/*")):
        time.sleep(0.005)
    if push.poll() is None:  # killed with the first objects on the server and the rest on their way
        os.killpg(push.pid, signal.SIGKILL)
    assert push.wait() == -signal.SIGKILL, "the push ended before it could be killed"
    pushed = len(list(store.rglob("*/*/*")))
    sh(a, "dvc", "push")  # completes what the killed one left
    assert len(list(store.rglob("*/*/*"))) > pushed  # it had been cut short
    assert "Everything is up to date" in sh(a, "dvc", "push")

    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(a), "b")
    sh(b, "dvc", "remote", "modify", "--local", "ssh", "keyfile", str(key))
    sh(b, "dvc", "pull")
    assert "Data and pipelines are up to date" in sh(b, "dvc", "status")
    assert lock_md5s(b) == lock_md5s(a) and len(lock_md5s(b)) == 4  # data/mnist and the three models
    for path in ("models/ae.pt", "models/vae.pt", "models/classifier.pt"):  # the bytes, not only the names
        assert hashlib.md5((b / path).read_bytes()).hexdigest() == lock_md5s(a)[path]


@needs_mnist
def test_a_second_clone_reproduces_an_experiment_from_the_ssh_remotes_run_cache_without_training(
        ran_repo, tmp_path, sshd):
    port, key = sshd
    a = ran_repo
    sh(a, "dvc", "remote", "add", "-d", "ssh", f"ssh://{getpass.getuser()}@127.0.0.1:{port}{tmp_path / 'store'}")
    sh(a, "dvc", "remote", "modify", "--local", "ssh", "keyfile", str(key))
    sh(a, "git", "commit", "-qam", "an SSH remote")
    sh(a, "dvc", "push")  # main's outputs
    assert "Running stage 'train_vae'" in sh(a, "dvc", "exp", "run", "-S", "vae.beta=4")
    # DVC's own `push --run-cache` sends the run records without the outputs git keeps (cache: false):
    # with those alone, b would train again. This sends both.
    assert "outputs of the run-cache pushed" in sh(a, sys.executable, "-m", "aevae.runcache", "push")

    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(a), "b")  # main alone: no experiment, no run-cache yet
    sh(b, "dvc", "remote", "modify", "--local", "ssh", "keyfile", str(key))
    sh(b, "dvc", "pull", "--run-cache")
    log = sh(b, "dvc", "exp", "run", "--pull", "-S", "vae.beta=4")
    assert "Running stage" not in log  # nothing trained, nothing evaluated
    for stage in ("train_vae", "evaluate@vae", "render"):
        assert f"Stage '{stage}' is cached - skipping run" in log
    assert lock_md5s(b) == lock_md5s(a)
    assert (b / "models/vae.pt").read_bytes() == (a / "models/vae.pt").read_bytes()
