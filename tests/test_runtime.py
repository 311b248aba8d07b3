"""The process settings every stage starts with: pinned code paths, a sized thread pool, the same bytes."""

import platform
import re
import subprocess
import sys

import pytest

from aevae import runtime

from helpers import MNIST, ROOT, needs_mnist

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pinned paths are x86's")
PROBE = ROOT.parent / "shared/tools/cpu_repro_probe.py"


def in_fresh_process(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


@x86
def test_setup_pins_torchs_code_path_and_sizes_its_pool():
    out = in_fresh_process(
        "from aevae import runtime; runtime.setup(1); import torch; torch.ones(9).sum();"
        "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
    )
    assert out == "AVX2 1"
    native = in_fresh_process("import torch; print(torch.backends.cpu.get_cpu_capability())")
    out = in_fresh_process(
        "from aevae import runtime; runtime.setup(2, pin=False); import torch;"
        "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())"
    )
    assert out == f"{native} 2"  # unpinned: each library's own choice for this CPU


@x86
@needs_mnist
@pytest.mark.skipif(not PROBE.exists(), reason=f"{PROBE} not found (the shared tools sit beside the repository)")
def test_pinned_training_matches_the_digest_an_avx2_machine_printed():
    """The shared probe trains the article's VAE for 300 steps; REFERENCE.md holds what an AVX2-only
    machine printed under these settings. Equal digests here mean bit-identical training across the two."""
    reference = (PROBE.parent / "REFERENCE.md").read_text()
    pinned = " ".join(f"{k}={v}" for k, v in runtime.PINNED.items() if k != "ONEDNN_MAX_CPU_ISA")
    row = next(line for line in reference.splitlines() if f"| 1 | {pinned} |" in line)
    weights, curve = re.findall(r"\| ([0-9a-f]{16}) ", row + " ")
    out = subprocess.run(
        [sys.executable, PROBE, MNIST], capture_output=True, text=True, check=True,
        env={"PATH": "", **runtime.PINNED, "PROBE_THREADS": "1"},
    ).stdout
    assert f"weights {weights} curve {curve} " in out
