"""What the training benches share: their command line, and the words for the CPU they ran on."""

import argparse

from aevae import runtime


def parser(doc: str, epochs: int, train_size: int) -> argparse.ArgumentParser:
    """A bench's options (its docstring's first line as the description): the epochs to train, the first
    N training images, and the data folder; a bench adds its own."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--train-size", type=int, default=train_size, help="train on the first N images")
    ap.add_argument("--data", default="data/mnist", help="folder with the four uncompressed IDX files")
    return ap


def extensions_text() -> str:
    """runtime.cpu_extensions() in words, for a bench's first line."""
    return ", ".join(runtime.cpu_extensions()) or "none of avx2 / avx512 / amx"
