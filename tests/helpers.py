"""What the tests share: where things are, running commands in a throwaway repository, reading its outputs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Real MNIST for the tests about real data: $MNIST_MIRROR, a folder holding the four IDX files (or .gz), or
# else the files that `dvc repro` fetched into data/mnist.
MNIST = Path(os.environ.get("MNIST_MIRROR") or ROOT / "data/mnist")
needs_mnist = pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists() and not (MNIST / "train-images-idx3-ubyte").exists(),
    reason="real MNIST not found: run `dvc repro` (its fetch stage), or set MNIST_MIRROR to a folder holding "
           "the four IDX files (.gz or not)",
)
OUTPUT_DIRS = ("models", "plots", "metrics")


def env(repo: Path) -> dict:
    return dict(
        os.environ,
        PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
        PYTHONPATH=str(repo / "src"),  # the copy's code, not the installed checkout's
        PYTHONUNBUFFERED="1",
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


def fails(repo: Path, *args) -> str:
    """Run a command in repo that must fail; its stderr."""
    run = subprocess.run(args, cwd=repo, env=env(repo), capture_output=True, text=True)
    assert run.returncode != 0, f"{' '.join(map(str, args))} succeeded:\n{run.stdout}"
    return run.stderr


def ran(log: str) -> set[str]:
    """The stages a `dvc repro` or `dvc exp run` log says it ran."""
    return set(re.findall(r"^Running stage '([^']+)'", log, re.MULTILINE))


def write_params(folder: Path, raw: dict) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def read_params(folder: Path) -> dict:
    return yaml.safe_load((folder / "params.yaml").read_text())


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under the output folders, and the lock, by path: stray temporaries show up too."""
    files = {
        str(p.relative_to(folder)): p.read_bytes()
        for top in OUTPUT_DIRS
        for p in sorted((folder / top).rglob("*"))
        if p.is_file()
    }
    if (folder / "dvc.lock").exists():
        files["dvc.lock"] = (folder / "dvc.lock").read_bytes()
    return files


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, as MNIST's."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def make_model(kind: str, **params):
    """Autoencoder `kind` as params.yaml builds it (`from_params`), but for `params`: keys of its `model`
    or `<kind>` section (e.g. z_dim=2)."""
    from aevae import config, model

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for key, value in params.items():
        raw["model" if key in raw["model"] else kind][key] = list(value) if isinstance(value, tuple) else value
    return model.KINDS[kind].from_params(config.parse(raw))


def outputs(repo):
    """The hash of every output in dvc.lock but the wall times'."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {
        o["path"]: o["md5"]
        for stage in lock["stages"].values()
        for o in stage["outs"]
        if not o["path"].endswith("time.json")  # time.json, evaluate_time.json
    }
