"""MNIST's IDX files as tensors, and the images as the autoencoders see them (grey, or binarised)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from aevae import DataError, MissingData

SPLITS = {"train": "train", "test": "t10k"}
IDX_DTYPE = {0x08: np.uint8}


def parse_idx(data: bytes) -> np.ndarray:
    """An IDX file (LeCun's format: magic 0x0000TTNN, NN big-endian int32 dims, then the values)."""
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in IDX_DTYPE:
        raise DataError(f"not an IDX file of unsigned bytes (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"IDX header truncated: {len(data)} bytes for {ndim} dims")
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", ndim, 4))
    if len(data) - header != int(np.prod(shape)):
        raise DataError(f"IDX shape {shape} needs {int(np.prod(shape)):,} values, file has {len(data) - header:,}")
    return np.frombuffer(data, IDX_DTYPE[data[2]], offset=header).reshape(shape)


def load(data_dir: str | Path, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1], shape (N, 784), and labels as int64; the first `limit` of the split.
    Raises MissingData for a file that is not there, DataError for one that is not what it should be."""
    prefix = SPLITS[split]
    arrays = []
    for kind in ("images-idx3", "labels-idx1"):
        path = Path(data_dir) / f"{prefix}-{kind}-ubyte"
        try:
            arrays.append(parse_idx(path.read_bytes())[:limit])
        except FileNotFoundError:
            raise MissingData(path) from None
        except DataError as e:
            raise DataError(f"{path}: {e}") from None
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{path.parent / path.name.replace('labels-idx1', 'images-idx3')}: shape {images.shape}, "
                        f"expected ({len(labels)}, 28, 28) to match its labels")
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def binarized(x: torch.Tensor, seed: int) -> torch.Tensor:
    """Each pixel 1 with its grey level as probability, else 0: one fixed draw, the same on every call."""
    return torch.bernoulli(x, generator=torch.Generator(x.device).manual_seed(seed))


def eval_images(x: torch.Tensor, binarize: str, split: str) -> torch.Tensor:
    """The images of `split` (train or test) as an autoencoder trained with `data.binarize` sees them
    outside training. They stay grey unless training binarises every batch anew; then they are binarised
    once, each split from a random stream of its own, because one shared stream would give a training
    image and a test image with the same grey levels the same draws."""
    return binarized(x, seed=list(SPLITS).index(split)) if binarize == "dynamic" else x


def batch_transform(binarize: str):
    """The function every training batch goes through (aevae.trainer.fit's `transform`). Under dynamic
    binarisation it draws each batch's pixels anew; otherwise there is none, and batches stay grey."""
    return torch.bernoulli if binarize == "dynamic" else None
