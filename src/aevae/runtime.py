"""How a stage's process computes: the CPU code paths pinned, MKL's CPU check answered, the thread
pool sized, denormals flushed; on which device, and whether bf16 pays there.

The thread count comes from the environment ($AEVAE_THREADS), not from params.yaml: it changes no
byte of any result, so changing it must rerun nothing, nor split DVC's run-cache between machines.

Importing the package answers MKL's CPU check (`answer_mkl_cpu_check`), which must happen before
torch loads MKL. A stage or the bench then calls `setup` first thing, before torch computes anything:
the code paths are chosen once, at torch's first operation, and worker threads copy the float mode
they start with. A stage that trains in bf16 leaves the paths unpinned: bf16 numbers differ between
CPUs anyway, and the pin would take away the kernels (AVX-512 BF16, AMX) that make bf16 fast.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil

from aevae import UserError

# PyTorch's own kernels (ATen), MKL's BLAS and oneDNN's convolutions each pick their code path by
# CPU, and the path changes float results in the last bits, which training then grows. Pinned to
# AVX2, which every x86-64 CPU of the last decade has, and with MKL's strict reproducibility mode,
# whose matrix products sum in an order fixed whatever the thread count, every x86-64 CPU computes
# the same bytes at any number of threads (docs/reproducibility.md).
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# What MKL reports once it honours that pin: branch 10 (AVX2) with the strict flag (0x10000).
MKL_AVX2_STRICT = 0x1000A

# MKL honours MKL_CBWR only where its vendor check, the exported function mkl_serv_intel_cpu_true of
# the MKL that libtorch_cpu links in, says Intel. Elsewhere it runs code of its own, whose sums round
# differently and whose sqrt (AdamW's denominator) is not even correctly rounded. A one-line library
# that defines that function to return 1, loaded globally before torch, answers the check first: MKL
# then runs its AVX2 branch on every x86-64 CPU, and on an Intel CPU nothing changes. The symbol is
# undocumented; `setup` checks that MKL took the branch, and says so on stderr where it did not.
MKL_OVERRIDE = "AEVAE_MKL_OVERRIDE"  # off: leave MKL its own choice of branch
MKL_CHECK_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"
_mkl_check_answered: str = "not tried"  # "" once answered, else why not


def answer_mkl_cpu_check() -> None:
    """Build (once, into the user's cache folder) and load the library that answers MKL's CPU check,
    unless $AEVAE_MKL_OVERRIDE is off, the CPU is not x86-64, or torch, and with it MKL, is already
    loaded. Why it was not loaded is kept for `setup` to report."""
    global _mkl_check_answered
    if os.environ.get(MKL_OVERRIDE, "").strip() == "off":
        _mkl_check_answered = f"{MKL_OVERRIDE}=off"
    elif not _x86_64() or sys.platform != "linux":
        _mkl_check_answered = "the override is built for Linux on x86-64 only"
    elif "torch" in sys.modules:
        _mkl_check_answered = "torch was imported before aevae, so MKL had already made its check"
    else:
        try:
            ctypes.CDLL(str(_build_mkl_check()), mode=os.RTLD_GLOBAL)
            _mkl_check_answered = ""
        except subprocess.CalledProcessError as e:
            _mkl_check_answered = f"the C compiler failed: {(e.stderr or b'').decode().strip()[-200:]}"
        except (OSError, RuntimeError) as e:
            _mkl_check_answered = str(e)


def _build_mkl_check() -> Path:
    """The shared library of MKL_CHECK_SOURCE, compiled with the system's C compiler on first use and
    kept under $XDG_CACHE_HOME/aevae (~/.cache/aevae), named by its source's hash."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aevae"
    lib = cache / f"mkl_intel_cpu_true-{hashlib.sha256(MKL_CHECK_SOURCE.encode()).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    cc = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) to build the library that answers it")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:  # a compiler killed midway leaves no library
        source, built = Path(tmp) / "check.c", Path(tmp) / lib.name
        source.write_text(MKL_CHECK_SOURCE)
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", built, source], check=True, capture_output=True)
        os.replace(built, lib)  # atomic: processes that build it at once each leave a whole file
    return lib


def _x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def mkl_branch() -> int | None:
    """The code branch MKL runs (MKL_AVX2_STRICT under the pin), or None for a torch without MKL.
    Asking makes MKL read $MKL_CBWR, as its first operation would."""
    import torch

    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        return ctypes.CDLL(str(lib), mode=os.RTLD_NOLOAD).mkl_serv_cbwr_get(-1) & 0xFFFFFFFF
    except (OSError, AttributeError):
        return None


def why_unpinned() -> str:
    """Why MKL does not run the pinned branch in this process, or "" where it does."""
    if not _x86_64():
        return f"a {platform.machine()} CPU, not x86-64"
    branch = mkl_branch()
    if branch == MKL_AVX2_STRICT:
        return ""
    if branch is None:
        return "this torch has no MKL"
    return _mkl_check_answered or "this torch's MKL does not ask mkl_serv_intel_cpu_true"


THREADS = "AEVAE_THREADS"


def thread_count() -> int:
    """The torch threads a stage runs: $AEVAE_THREADS, an int >= 1, or `auto` (the default), the cores
    that are free when the stage starts (`free_cores`)."""
    value = os.environ.get(THREADS, "auto").strip()
    if value == "auto":
        return free_cores()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise UserError(f"{THREADS} = {value!r} is not accepted; expected auto (the cores free when a stage starts) "
                    f"or an int >= 1, e.g. {THREADS}=1 dvc repro")


def free_cores(window: float = 0.2) -> int:
    """The cores this process may use, less those other processes kept busy over the last `window` seconds
    (psutil's per-CPU load), and at least 1. OpenMP's threads wait for each other at every operation, so
    a thread on a core that another process holds slows every other thread down: next to two busy
    processes on 2 cores, 2 threads take 1.4 times as long as 1 (docs/reproducibility.md). The load
    average would be too slow a measure: it still counts the stage that has just ended."""
    cores = psutil.Process().cpu_affinity() if hasattr(psutil.Process, "cpu_affinity") else range(psutil.cpu_count())
    load = psutil.cpu_percent(interval=window, percpu=True)
    busy = sum(load[cpu] for cpu in cores if cpu < len(load)) / 100
    return max(1, round(len(cores) - busy))


def setup(threads: int | None = None, pin: bool = True) -> None:
    """Pin the code paths (x86-64 only; `pin=False` leaves each library its fastest, for bf16 and the
    bench), size torch's thread pool (`threads`, or else `thread_count()`), and flush denormal floats
    to zero. Under the pin, one line on stderr where MKL does not run the pinned branch: this CPU then
    computes bytes of its own."""
    threads = threads or thread_count()
    if os.environ.get(MKL_OVERRIDE, "on").strip() not in ("on", "off"):
        raise UserError(f"{MKL_OVERRIDE} = {os.environ[MKL_OVERRIDE]!r} is not accepted; expected on (the default) "
                        f"or off (MKL's own code on a CPU that is not Intel's), e.g. {MKL_OVERRIDE}=off dvc repro")
    if _x86_64():
        if pin:
            os.environ.update(PINNED)
        else:  # a child of a pinned process inherits the pin: bf16 would then be emulated
            for key, value in PINNED.items():
                if os.environ.get(key) == value:
                    del os.environ[key]
    import torch

    if pin and (why := why_unpinned()):
        print(f"note: MKL does not run the pinned AVX2 branch here ({why}): this CPU computes bytes of its "
              "own, not the committed ones (docs/reproducibility.md)", file=sys.stderr)
    # Adam's moment estimates for rarely-lit pixels decay geometrically into the denormal range
    # after ~800 steps, where x86 float arithmetic crawls. Flushing them to zero changes no figure we report.
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def cpu_extensions(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """This CPU's vector extensions that decide the speed of float32 and bf16 matmuls, from `cpuinfo`'s
    flags (none where there is no such file, as on macOS)."""
    flags = set()
    if os.path.exists(cpuinfo):
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
    return [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]


def native_bf16(device) -> bool:
    """Whether `device` multiplies bf16 in hardware (AVX-512 BF16 or AMX; a CUDA GPU of compute
    capability 8.0 or newer), where it is faster than float32; elsewhere torch emulates it, slower."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_extensions()))


def resolve_device(name: str, key: str):
    """The torch device `name` (auto, cpu or cuda) names; `key` is where the name came from, for the error."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key} = 'cuda' but no CUDA GPU is available here; accepted: auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def warn_precision(precision: str, device, key: str) -> None:
    """Say on stderr when bf16 was asked for on a device that only emulates it: slower than float32."""
    if precision == "bf16" and not native_bf16(device):
        what = "this CPU has neither AVX-512 BF16 nor AMX" if device.type == "cpu" else "this GPU has no bf16 units"
        print(f"warning: {key} = bf16, but {what}: torch emulates bf16 here, slower than float32; "
              f"for speed, set {key}: float32", file=sys.stderr)


@contextmanager
def one_thread():
    """Run the block on one thread (torch's and MKL's): library calls whose results depend on the thread
    count (LAPACK's factorisations), and many operations too small to share; the pool is restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
