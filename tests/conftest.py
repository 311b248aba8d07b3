import copy
import os
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
