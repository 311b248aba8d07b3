import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Real MNIST for the tests about real data: $MNIST_MIRROR if it is a folder, else the shared copy beside the repo.
MNIST = Path(os.environ.get("MNIST_MIRROR") or ROOT.parent / "shared/data/mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists() and not (MNIST / "train-images-idx3-ubyte").exists(),
    reason=f"real MNIST not found at {MNIST} (set MNIST_MIRROR to a folder holding the four IDX files)",
)


@pytest.fixture
def raw_params():
    """The shipped params.yaml as a plain dict, for tests to modify."""
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.fixture
def repo(tmp_path, raw_params):
    """A throwaway git + DVC copy of this repository's pipeline with a tiny config, committed, not run."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ["dvc.yaml", "stages", "src", ".gitignore", ".dvcignore"]:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, repo / name)
    raw_params["data"]["train_size"] = 1000
    raw_params["train"]["epochs"] = 1
    raw_params["classifier"].update(train_size=2000, epochs=1)
    raw_params["evaluate"].update(iw_samples=10, samples=1000)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw_params, sort_keys=False))
    sh(repo, "git", "init", "-q")
    sh(repo, "dvc", "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "pipeline")
    return repo


def env(repo: Path) -> dict:
    return dict(
        os.environ,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        PYTHONPATH=str(repo / "src"),  # the copy's code, not the installed checkout's
        MNIST_MIRROR=str(MNIST),
        DVC_NO_ANALYTICS="1",
        GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.com",
    )


def sh(repo: Path, *args) -> str:
    """Run a command in repo; fail the test with its output unless it succeeds."""
    run = subprocess.run(args, cwd=repo, env=env(repo), capture_output=True, text=True)
    assert run.returncode == 0, f"{' '.join(map(str, args))} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout
