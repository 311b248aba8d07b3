"""MNIST: fetch the four IDX files from the first source that has them, verify, load as tensors."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from aevae import UserError
from aevae.files import atomic_path

# SHA-256 of the decompressed files: the .gz bytes differ between mirrors, the contents do not.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {"train": "train", "test": "t10k"}
IDX_DTYPE = {0x08: np.uint8}


def fetch(sources: list[str], out: str | Path, sha256: dict[str, str] = SHA256) -> None:
    """Write the verified, decompressed files into `out`, taking each from the first source that has it.

    A source is a local folder or a base URL; `name.gz` and `name` are both accepted.
    Nothing is written unless every file was found and verified.
    """
    if not sources:
        raise UserError("fetch: no MNIST source; set MNIST_MIRROR to a folder or base URL, or list data.mirrors")
    with atomic_path(out, directory=True) as tmp:
        for name, digest in sha256.items():
            data, where = _first_valid(name, digest, sources)
            (tmp / name).write_bytes(data)
            print(f"fetch: {name} <- {where}")


def _first_valid(name: str, digest: str, sources: list[str]) -> tuple[bytes, str]:
    tried = []
    for source in sources:
        misses = {}
        for candidate in (f"{name}.gz", name):
            where = _join(source, candidate)
            try:
                data = _decompress(_read(where))
                _verify(data, digest)
                return data, where
            except _Miss as e:
                misses[where] = str(e)
        if len(set(misses.values())) == 1:  # say it once when both names failed alike
            misses = {f"{_join(source, name)}[.gz]": next(iter(misses.values()))}
        tried += [f"{where}: {why}" for where, why in misses.items()]
    raise UserError(f"fetch: no source gave a valid {name}; tried " + "; ".join(tried))


class _Miss(Exception):
    """This candidate did not give the file: say why and try the next one."""


def _join(source: str, name: str) -> str:
    return source.rstrip("/") + "/" + name


def _is_url(where: str) -> bool:
    return where.split("://", 1)[0] in ("http", "https", "ftp", "file")


def _read(where: str) -> bytes:
    try:
        if _is_url(where):
            with urllib.request.urlopen(where, timeout=30) as r:
                return r.read()
        return Path(where).read_bytes()
    except FileNotFoundError:
        raise _Miss("not found") from None
    except urllib.error.HTTPError as e:
        raise _Miss("not found" if e.code == 404 else f"HTTP {e.code} {e.reason}") from None
    except OSError as e:  # URLError, HTTPError, timeouts and permission errors are all OSErrors
        raise _Miss(str(getattr(e, "reason", None) or e)) from None


def _decompress(raw: bytes) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise _Miss(f"truncated or corrupt gzip ({e})") from None


def _verify(data: bytes, digest: str) -> None:
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        what = "an HTML page" if data.lstrip()[:1] == b"<" else f"{len(data):,} bytes"
        raise _Miss(f"checksum mismatch: got {what} with SHA-256 {got[:12]}..., expected {digest[:12]}...")


def parse_idx(data: bytes) -> np.ndarray:
    """An IDX file (LeCun's format: magic 0x0000TTNN, NN big-endian int32 dims, then the values)."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPE:
        raise _Miss(f"not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _Miss(f"IDX header truncated: {len(data)} bytes for {ndim} dims")
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, 4))
    if len(data) - header != int(np.prod(shape)):
        raise _Miss(f"IDX shape {shape} needs {int(np.prod(shape)):,} values, file has {len(data) - header:,}")
    return np.frombuffer(data, IDX_DTYPE[data[2]], offset=header).reshape(shape)


def load(data_dir: str | Path, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1], shape (N, 784), and labels as int64; the first `limit` of the split."""
    prefix = SPLITS[split]
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        path = Path(data_dir) / f"{prefix}-{kind}-ubyte"
        try:
            arrays.append(parse_idx(path.read_bytes())[:limit])
        except FileNotFoundError:
            raise UserError(f"{path}: not found; run the fetch stage ('dvc repro fetch') first") from None
        except _Miss as e:
            raise UserError(f"{path}: {e}") from None
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise UserError(f"{path.parent / path.name.replace('labels-idx1', 'images-idx3')}: shape {images.shape}, "
                        f"expected ({len(labels)}, 28, 28) to match its labels")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def binarized(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each pixel 1 with its grey level as probability, else 0: one fixed draw, the same on every call."""
    return torch.bernoulli(x, generator=torch.Generator(x.device).manual_seed(seed))
