"""AE vs VAE on MNIST: models, data, training and evaluation behind a DVC pipeline.

What every command shares: a failed one loses nothing. Bad input raises one of the typed errors
below, which `run_command` reports in one line with the next step in dvc.yaml's stage names. Every
file is written whole or not at all (`atomic_path`), model files included (`write_model`).
"""

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path


class UserError(Exception):
    """Bad input from the user (params, data, environment): reported in one line, exit code 2."""


class DataError(UserError):
    """A data file that is not what it should be: not IDX, truncated, the wrong shape."""


class MissingData(UserError):
    """A data file that is not there (`path`)."""

    def __init__(self, path):
        self.path = Path(path)
        super().__init__(f"{path}: not found")


class MissingModel(MissingData):
    """A model file that is not there (`path`, models/<kind>.pt)."""


def next_step(e: UserError) -> str:
    """What to do about `e`, as the pipeline does it: models/<kind>.pt is made by train_<kind>, the data
    by fetch (dvc.yaml). Empty where the message says it already."""
    if isinstance(e, MissingModel):
        return f"; train it first: dvc repro train_{e.path.stem}"
    if isinstance(e, MissingData):
        return "; run the fetch stage ('dvc repro fetch') first"
    if isinstance(e, DataError):
        return "; restore the fetched files with 'dvc checkout data/mnist', or fetch them anew with 'dvc repro -f fetch'"
    return ""


def run_command(main, kinds=None):
    """Run a command's main() (a stage script's, or a `python -m aevae.<module>`'s), or main(kind) for
    one that takes one of `kinds` as its argument. A UserError becomes one line on stderr, with the
    next step (`next_step`), and exit code 2, not a traceback."""
    try:
        if kinds is None:
            return main()
        kind = sys.argv[1] if len(sys.argv) == 2 else None
        if kind not in kinds:
            raise UserError(f"usage: {os.path.basename(sys.argv[0])} KIND, with KIND one of {', '.join(kinds)}")
        main(kind)
    except UserError as e:
        print(f"error: {e}{next_step(e)}", file=sys.stderr)
        sys.exit(2)


@contextmanager
def atomic_path(path: str | Path, directory: bool = False):
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds. A process killed
    at any moment leaves the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and in the same folder, so the final rename stays on one filesystem.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp's 0700 would otherwise become the output's mode
    target = tmp if directory else tmp / path.name
    try:
        yield target
        if directory and path.exists():
            # A directory cannot be replaced in one rename: move the old one aside first.
            old = tmp.with_name(tmp.name + ".old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


# Model files, as nanoGPT keeps its checkpoints: the model's kind, its `model_args` (the few values its
# class is built from, not the params.yaml sections they came from, so that a file outlives any key added
# to params.yaml), a format version and the weights. Format 1, before the version was recorded, held the
# params.yaml sections whole ("args"); it is still read.
MODEL_FORMAT = 2


def write_model(path: str | Path, kind: str, model_args: dict, model) -> None:
    import torch

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "kind": kind, "model_args": model_args, "state_dict": state}, tmp)


def read_model(path, build: dict[str, Callable], device="cpu"):
    """The model saved at `path` (or read from an open binary file), in eval mode on `device`. `build`
    maps each kind a caller accepts to a function that makes its untrained model from the file's
    model args and format. Raises MissingModel when there is no file."""
    import torch

    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingModel(path) from None
    kind, version = ckpt.get("kind"), ckpt.get("format", 1)
    if kind not in build:
        raise UserError(f"{path} holds a '{kind}' model; expected one of: {', '.join(build)}")
    if version not in (1, MODEL_FORMAT):
        raise UserError(f"{path}: model file format {version!r} is not one this code reads (accepted: 1 to "
                        f"{MODEL_FORMAT}); load it with the aevae that wrote it, or retrain it: dvc repro -f train_{kind}")
    model = build[kind](ckpt["model_args"] if version == MODEL_FORMAT else ckpt["args"], version)
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


# Before anything imports torch: MKL makes its CPU check when torch loads it (aevae.runtime).
from aevae.runtime import answer_mkl_cpu_check  # noqa: E402

answer_mkl_cpu_check()
