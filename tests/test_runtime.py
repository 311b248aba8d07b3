"""The process settings every stage starts with: pinned code paths, a sized thread pool, the same bytes."""

import ctypes
import importlib.util
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from aevae import runtime

from helpers import MNIST, ROOT, needs_mnist

x86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pinned paths are x86's")


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


def probe(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, ROOT / "bench/repro_probe.py", "--data", MNIST, *map(str, args)],
                          capture_output=True, text=True, check=True, env=dict(os.environ, **env))


INTEL = "GenuineIntel" in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else "")


@x86
@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("net, threads", [("vae", 1), ("conv", 3)])
def test_pinned_training_matches_the_one_reference_of_every_x86_cpu(net, threads):
    """The probe trains the article's VAE, or the classifier's kind of CNN, for a few hundred steps; equal
    digests mean bit-identical training to the machines that recorded them, Intel's and AMD's alike.
    A torch whose MKL no longer has the vendor check that aevae.runtime answers fails here on AMD."""
    run = probe("--net", net, "--threads", threads)
    assert "matches the reference" in run.stdout, (
        f"{run.stdout}{run.stderr}on a {load_probe().cpu_name()} CPU: if stderr says MKL does not run the pinned "
        "branch, the override no longer applies (a torch upgrade may have removed mkl_serv_intel_cpu_true)")
    assert run.stderr == ""  # no note: MKL runs the pinned branch


@x86
@needs_mnist
@pytest.mark.slow
def test_without_the_override_intel_cpus_give_the_same_bytes_and_others_say_they_do_not():
    """AEVAE_MKL_OVERRIDE=off leaves MKL its own choice. On an Intel CPU that is the pinned branch: no byte
    changes. Elsewhere MKL ignores the pin, and the one line on stderr says so."""
    with_it, without = probe(), probe(AEVAE_MKL_OVERRIDE="off")
    note = "note: MKL does not run the pinned AVX2 branch here (AEVAE_MKL_OVERRIDE=off)"
    if INTEL:
        assert without.stdout == with_it.stdout and without.stderr == ""
    else:
        assert note in without.stderr and len(without.stderr.splitlines()) == 1


def setup_in_a_fresh_process(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code + "; from aevae import runtime; runtime.setup(1)"],
                          capture_output=True, text=True, env=dict(os.environ, **env))


@x86
@pytest.mark.parametrize("code, env, why", [
    ("import aevae", {"PATH": "/nonexistent"}, "no C compiler (cc, gcc or clang) to build the library"),
    ("import torch, aevae", {}, "torch was imported before aevae"),
    ("import aevae", {"AEVAE_MKL_OVERRIDE": "off"}, "AEVAE_MKL_OVERRIDE=off"),
])
def test_where_the_override_cannot_apply_one_line_says_why_and_the_run_goes_on(tmp_path, code, env, why):
    run = setup_in_a_fresh_process(code, XDG_CACHE_HOME=str(tmp_path), **env)  # an empty cache: it must build
    assert run.returncode == 0
    if INTEL:  # MKL runs the pinned branch on its own: nothing to say
        assert run.stderr == ""
    else:
        assert run.stderr.startswith(f"note: MKL does not run the pinned AVX2 branch here ({why}")
        assert run.stderr.endswith("this CPU computes bytes of its own, not the committed ones "
                                   "(docs/reproducibility.md)\n") and run.stderr.count("\n") == 1


def test_a_bad_override_value_stops_the_stage_with_one_line():
    run = setup_in_a_fresh_process("import aevae", AEVAE_MKL_OVERRIDE="of")
    assert run.returncode != 0
    assert ("AEVAE_MKL_OVERRIDE = 'of' is not accepted; expected on (the default) or off (MKL's own code on a CPU "
            "that is not Intel's), e.g. AEVAE_MKL_OVERRIDE=off dvc repro") in run.stderr


@x86
def test_the_override_is_built_once_into_the_cache_and_answers_intel(tmp_path):
    run = setup_in_a_fresh_process("import aevae", XDG_CACHE_HOME=str(tmp_path))
    assert run.returncode == 0 and run.stderr == ""
    built = list((tmp_path / "aevae").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no temporary left beside it
    assert ctypes.CDLL(str(built[0])).mkl_serv_intel_cpu_true() == 1
    out = in_fresh_process("import aevae; from aevae import runtime; runtime.setup(1); print(hex(runtime.mkl_branch()))")
    assert out == "0x1000a"  # MKL_CBWR=AVX2,STRICT, honoured


@x86
def test_an_unpinned_child_of_a_pinned_process_gets_the_native_paths_back():
    """A bf16 stage, or the bench's bf16 child, runs unpinned even when its parent's pins are in its environment:
    inherited, ONEDNN_MAX_CPU_ISA=AVX2 would make a CPU with AMX emulate bf16."""
    native = in_fresh_process("import torch; print(torch.backends.cpu.get_cpu_capability())")
    code = ("from aevae import runtime; runtime.setup(1, pin=False); import os, torch; torch.ones(9).sum();"
            "print(torch.backends.cpu.get_cpu_capability(), *(k in os.environ for k in runtime.PINNED))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, **runtime.PINNED)).stdout.split()
    assert out == [native, "False", "False", "False"]


def test_the_probe_names_the_cpu_by_vendor_and_extensions(tmp_path):
    probe = load_probe()
    flags = "fpu sse2 avx2 avx512f avx512bw avx512vl"
    for vendor, kind in [("GenuineIntel", "intel"), ("AuthenticAMD", "amd"), ("CentaurHauls", "other")]:
        for extra in ("", " amx_tile amx_bf16"):
            info = tmp_path / "cpuinfo"
            info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: {flags}{extra}\n")
            assert probe.cpu_name(info) == f"{kind}-avx512{'-amx' if extra else ''}"
    assert {net for net, _ in probe.REFERENCE} == {"vae", "conv"}


def load_probe():
    spec = importlib.util.spec_from_file_location("repro_probe", ROOT / "bench/repro_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def threads_in_a_stage(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != runtime.THREADS} | ({runtime.THREADS: value} if value else {})
    code = "from aevae import runtime; runtime.setup(); import torch; print(torch.get_num_threads())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_the_thread_count_comes_from_aevae_threads():
    assert threads_in_a_stage("3").stdout == "3\n"
    assert threads_in_a_stage(" 1 ").stdout == "1\n"
    for bad in ("0", "all", "-2", "1.5"):
        run = threads_in_a_stage(bad)
        assert run.returncode != 0
        assert f"AEVAE_THREADS = '{bad}' is not accepted; expected auto (the cores free when a stage starts) or " \
               f"an int >= 1, e.g. AEVAE_THREADS=1 dvc repro" in run.stderr


@pytest.mark.parametrize("busy, free", [((0, 0), 2), ((100, 0), 1), ((100, 100), 1), ((60, 10), 1), ((40, 5), 2)])
def test_auto_is_the_cores_other_processes_leave_free(monkeypatch, busy, free):
    """Two CPUs, each `busy` percent of the window: free is what they leave, at least 1."""
    monkeypatch.setattr(psutil.Process, "cpu_affinity", lambda self: [0, 1])
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: [float(b) for b in busy])
    assert runtime.free_cores(window=0) == free


def test_auto_gives_a_stage_every_core_of_an_idle_machine_and_one_next_to_busy_ones():
    cores = len(os.sched_getaffinity(0))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)
        loaded = runtime.free_cores(window=0.5)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    assert loaded == 1


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


def test_cpu_extensions_are_the_flags_that_matter_of_every_core(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx2\nbugs\t\t: avx512f_spectre\n")
    assert runtime.cpu_extensions(str(cpuinfo)) == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\nmodel name\t: avx512f in its name\n")
    assert runtime.cpu_extensions(str(cpuinfo)) == ["avx2"]
    assert runtime.cpu_extensions(str(tmp_path / "none")) == []  # no /proc (macOS): none known
