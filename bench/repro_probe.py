"""Cross-machine reproducibility probe: does this CPU train to the same bytes as the reference machines?

    python bench/repro_probe.py [--net vae|conv] [--threads N] [--data data/mnist]

Trains, under the pinned code paths of aevae.runtime, a small net for a few hundred steps on the
first 19,200 MNIST training images from a fixed seed, and prints a digest of its final weights and
of its loss curve, with this CPU's kind and whether the digests match the ones recorded for it.
vae: the article's VAE (784-512-256-50, squared error summed + KL, AdamW 1e-3, batch 64, 300 steps).
conv: the classifier's kind of CNN (two 5x5 convolutions of 32 and 64 channels, each max-pooled,
then 1024-128-10; cross-entropy, AdamW 1e-3, batch 128, 150 steps), for oneDNN's convolutions.

The loss is one sum over the whole batch, which ATen splits between threads: the curve's digest
is per thread count (1, or more), the weights' is the same at any.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

from aevae import runtime

# (net, "1" or "n" threads) -> (weights, curve), under runtime.PINNED, torch 2.14.1: one reference for
# every x86-64 CPU, since MKL runs the pinned branch on each (aevae.runtime answers its vendor check).
# Printed alike by an Intel Xeon with AVX-512 and AMX, one with AVX-512 and no AMX, an AMD EPYC with
# AVX2 only and one with AVX-512 (docs/reproducibility.md).
REFERENCE = {
    ("vae", "1"): ("298cb1afa5c8bcc5", "c2bea4104dbf86e3"),
    ("vae", "n"): ("298cb1afa5c8bcc5", "c23646ef778a1424"),
    ("conv", "1"): ("7b9593255cc8e3a7", "da582474944433a6"),
    ("conv", "n"): ("7b9593255cc8e3a7", "da582474944433a6"),
}


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """vendor and extensions, e.g. intel-avx512-amx: said alongside the verdict, not keyed on. Under the
    pin neither decides the bytes: every kernel runs its AVX2 code."""
    path = Path(cpuinfo)
    info = path.read_text() if path.exists() else ""
    vendor = next((line.split(":")[1].strip() for line in info.splitlines() if line.startswith("vendor_id")), "")
    ext = runtime.cpu_extensions(str(cpuinfo))
    kind = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(vendor, "other")
    return f"{kind}-{'avx512' if 'avx512f' in ext else 'avx2'}{'-amx' if 'amx_tile' in ext else ''}"


def read_idx(folder: Path, name: str) -> bytes:
    for path in (folder / name, folder / f"{name}.gz"):
        if path.exists():
            return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    sys.exit(f"error: {folder / name}: not found (nor .gz); pass --data a folder with MNIST's IDX files")


def probe(net: str, threads: int, folder: Path) -> tuple[str, str]:
    runtime.setup(threads)
    import torch
    import torch.nn.functional as F
    from torch import nn

    from aevae import trainer

    raw = np.frombuffer(read_idx(folder, "train-images-idx3-ubyte"), np.uint8, offset=16)
    x = torch.from_numpy(raw[: 19200 * 784].reshape(-1, 784).astype(np.float32) / 255)
    torch.manual_seed(0)
    losses = []
    if net == "conv":
        labels = np.frombuffer(read_idx(folder, "train-labels-idx1-ubyte"), np.uint8, offset=8)
        y = torch.from_numpy(labels[:19200].astype(np.int64))
        model = nn.Sequential(nn.Unflatten(1, (1, 28, 28)), nn.Conv2d(1, 32, 5), nn.MaxPool2d(2), nn.ReLU(),
                              nn.Conv2d(32, 64, 5), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(),
                              nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10))
        trainer.backward_on_one_thread(model)  # as the trainer does
        params = list(model.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3)
        for idx in torch.randperm(len(x)).split(128):
            loss = F.cross_entropy(model(x[idx]), y[idx], reduction="sum")
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    else:
        enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 100))
        dec = nn.Sequential(nn.Linear(50, 256), nn.ReLU(), nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 784))
        params = list(enc.parameters()) + list(dec.parameters())
        opt = torch.optim.AdamW(params, lr=1e-3)
        for idx in torch.randperm(len(x)).split(64):
            xb = x[idx]
            mu, logvar = enc(xb).chunk(2, -1)
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            loss = F.mse_loss(torch.sigmoid(dec(z)), xb, reduction="sum") - 0.5 * (
                1 + logvar - mu.pow(2) - logvar.exp()).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    weights = hashlib.sha256()
    for p in params:
        weights.update(p.detach().numpy().tobytes())
    return weights.hexdigest()[:16], hashlib.sha256(np.array(losses, np.float32).tobytes()).hexdigest()[:16]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", choices=["vae", "conv"], default="vae")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path("data/mnist"), help="folder with MNIST's IDX files (or .gz)")
    args = ap.parse_args()
    weights, curve = probe(args.net, args.threads, args.data)
    ref = REFERENCE[(args.net, "1" if args.threads == 1 else "n")]
    verdict = "matches the reference" if ref == (weights, curve) else f"DIFFERS from the reference {ref[0]} {ref[1]}"
    print(f"{args.net} weights {weights} curve {curve} threads {args.threads} cpu {cpu_name()}: {verdict}")

if __name__ == "__main__":
    main()
