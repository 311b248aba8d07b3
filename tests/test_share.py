"""Two clones stand for two machines, sharing a bare git remote and a DVC remote in a local folder:
an experiment run on one reaches the other, models included, with no retraining."""

import json
import subprocess
import sys

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
        "print(model.load('models/vae.pt').beta)\n"
        "with dvc.api.open('models/vae.pt', rev='main', mode='rb') as f: print(model.load(f).beta)"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=b, env=env(b), capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["4.0", "1.0"]
