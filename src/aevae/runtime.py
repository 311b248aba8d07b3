"""How a stage's process computes: the CPU code paths pinned, the thread pool sized, denormals flushed.

A stage or the bench calls `setup` first thing, before torch computes anything: the code paths are
chosen once, at torch's first operation, and worker threads copy the float mode they start with.
"""

from __future__ import annotations

import os
import platform

# PyTorch's own kernels (ATen), MKL's BLAS and oneDNN's convolutions each pick their code path by
# CPU, and the path changes float results in the last bits, which training then grows: the same
# seed trained different models on an AVX-512 CPU and on an AVX2 one. Pinned to AVX2, which every
# x86-64 CPU of the last decade has, they compute the same bytes on both (README, Reproducibility).
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def setup(threads: int, pin: bool = True) -> None:
    """Pin the code paths (x86-64 only; `pin=False` leaves each library its fastest, for the bench),
    size torch's thread pool, and flush denormal floats to zero."""
    if pin and platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.update(PINNED)
    import torch

    # Adam's moment estimates for rarely-lit pixels decay geometrically into the denormal range
    # after ~800 steps, where x86 float arithmetic crawls: epochs got 1.8x slower from then on.
    # Flushing them to zero changes no figure we report.
    torch.set_flush_denormal(True)
    # One thread by default: on a busy machine, OpenMP threads that wait for each other at every
    # op's barrier made an epoch 5 to 50 times slower; a single thread only shares its core.
    torch.set_num_threads(threads)
