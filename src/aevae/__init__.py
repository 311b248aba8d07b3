"""AE vs VAE on MNIST: models, data, training and evaluation behind a DVC pipeline."""

import os
import sys


class UserError(Exception):
    """Bad input from the user (params, data, environment): reported in one line, exit code 2."""


class DataError(UserError):
    """A file that is not what it should be: not IDX, truncated, the wrong shape."""


def run_stage(main, kinds=None):
    """Run a stage's main(), or main(kind) for a stage that takes one of `kinds` as its argument;
    a UserError becomes one line on stderr and exit code 2, not a traceback."""
    try:
        if kinds is None:
            return main()
        kind = sys.argv[1] if len(sys.argv) == 2 else None
        if kind not in kinds:
            raise UserError(f"usage: {os.path.basename(sys.argv[0])} KIND, with KIND one of {', '.join(kinds)}")
        main(kind)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
