import copy
import os
import shutil

import pytest
import yaml

from helpers import ROOT, sh, write_params

# Two test workers on two cores: every stage a test runs, and dvc's, gets one thread.
os.environ["AEVAE_THREADS"] = "1"

# Small enough for a test, big enough for every metric to mean something.
TINY = {
    "data": {"train_size": 1000},
    "train": {"epochs": 1},
    "classifier": {"train_size": 2000, "epochs": 1},
    "evaluate": {"nll_samples": 10, "samples": 1000},
}


# Tests that run a real `dvc repro` or a stage as a process: `pytest -m "not slow"` leaves them out.
SLOW_FIXTURES = {"ran_repo", "repo", "workdir"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def raw_params():
    """The shipped params.yaml as a plain dict, for tests to modify."""
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


def make_repo(path, raw_params):
    """A git + DVC copy of this repository's pipeline with the tiny config, committed, not run."""
    path.mkdir()
    for name in ["dvc.yaml", "stages", "src", ".gitignore", ".dvcignore"]:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, path / name)
    for section, values in TINY.items():
        raw_params[section].update(values)
    write_params(path, raw_params)
    sh(path, "git", "init", "-q")
    sh(path, "dvc", "init", "-q")
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "pipeline")
    return path


@pytest.fixture
def repo(tmp_path, raw_params):
    """A throwaway repository with the tiny config, committed, not run."""
    return make_repo(tmp_path / "repo", raw_params)


@pytest.fixture(scope="session")
def _ran(tmp_path_factory):
    """The tiny pipeline run once per test session (`dvc repro`, then committed), and its log."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    path = make_repo(tmp_path_factory.mktemp("ran") / "repo", raw)
    log = sh(path, "dvc", "repro")
    sh(path, "git", "add", "-A")
    sh(path, "git", "commit", "-qm", "run")
    return path, log


@pytest.fixture
def ran_repo(_ran, tmp_path):
    """A copy of the session's run repository, for a test to change at will."""
    path = tmp_path / "repo"
    shutil.copytree(_ran[0], path, symlinks=True)
    return path


@pytest.fixture
def ran_log(_ran):
    """What the session's `dvc repro` printed."""
    return _ran[1]
