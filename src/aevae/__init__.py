"""AE vs VAE on MNIST: models, data, training and evaluation behind a DVC pipeline."""

import sys


class UserError(Exception):
    """Bad input from the user (params, data, environment): reported in one line, exit code 2."""


class DataError(UserError):
    """A file that is not what it should be: not IDX, truncated, the wrong shape."""


def run_stage(main):
    """Run a stage's main(); a UserError becomes one line on stderr and exit code 2, not a traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
