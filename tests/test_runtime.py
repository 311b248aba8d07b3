"""The process settings every stage starts with: pinned code paths, a sized thread pool, the same bytes."""

import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


@pytest.mark.parametrize("extensions, native", [
    (["avx2"], False), (["avx2", "avx512f"], False), (["avx2", "avx512f", "avx512_bf16"], True),
    (["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"], True),
])
def test_bf16_warns_where_the_cpu_only_emulates_it(monkeypatch, capsys, extensions, native):
    monkeypatch.setattr(runtime, "cpu_extensions", lambda: extensions)
    cpu = torch.device("cpu")
    assert runtime.native_bf16(cpu) == native
    runtime.warn_precision("float32", cpu, "train.precision")
    assert capsys.readouterr().err == ""
    runtime.warn_precision("bf16", cpu, "classifier.precision")
    err = capsys.readouterr().err
    if native:
        assert err == ""
    else:
        assert err == ("warning: classifier.precision = bf16, but this CPU has neither AVX-512 BF16 nor AMX: torch "
                       "emulates bf16 here, slower than float32; for speed, set classifier.precision: float32\n")


def test_cpu_extensions_are_read_off_this_cpu():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert all(f" {ext}" in flags for ext in runtime.cpu_extensions())
    assert ("avx2" in runtime.cpu_extensions()) == (" avx2" in flags)
