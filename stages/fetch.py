"""fetch: the four MNIST files into data/mnist, from $MNIST_MIRROR (a folder or base URL) or data.mirrors."""

import os

from aevae import config, download, run_command


def main():
    p = config.load()
    mirror = os.environ.get("MNIST_MIRROR")
    download.fetch(([mirror] if mirror else []) + list(p.data.mirrors), "data/mnist")


if __name__ == "__main__":
    run_command(main)
