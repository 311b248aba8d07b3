"""AE vs VAE on MNIST: models, data, training and evaluation behind a DVC pipeline.

The package's modules raise the typed errors below and name no DVC stage; `run_command`, which every
stage script and command line runs under, words the next action in the pipeline's terms (dvc.yaml's
stages)."""

import os
import sys
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


# Before anything imports torch: MKL makes its CPU check when torch loads it (aevae.runtime).
from aevae.runtime import answer_mkl_cpu_check  # noqa: E402

answer_mkl_cpu_check()
