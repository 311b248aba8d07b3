"""What an epoch's training checkpoint costs, measured side by side in one run.

    python bench/checkpoint_cost.py [--epochs 3] [--train-size 60000] [--data data/mnist]

Trains params.yaml's VAE with and without a checkpoint (aevae.trainer.Checkpoint) written after
every epoch, from the same seed, and prints the epoch times, the time of one checkpoint write
(timed alone, as often as fits in 2 s), and their ratio.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import parser

from aevae import config, data, model, runtime
from aevae.trainer import Checkpoint, fit


def main():
    args = parser(__doc__, epochs=3, train_size=60000).parse_args()
    p = config.load()
    runtime.setup()
    import torch

    cfg = p.train.model_copy(update={"epochs": args.epochs})
    train_x, _ = data.load(args.data, "train", args.train_size)
    test_x, _ = data.load(args.data, "test")
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        times = {}
        for name, checkpoint in (("without", None), ("with", Checkpoint(Path(tmp) / "vae.pt", "bench"))):
            torch.manual_seed(0)
            net = model.build("vae", p)
            start, ends = time.perf_counter(), []
            fit(net, (train_x,), (test_x,), cfg, device, checkpoint=checkpoint,
                on_epoch=lambda epoch, ends=ends: ends.append(time.perf_counter()))
            times[name] = [b - a for a, b in zip([start, *ends], ends)]
        opt = torch.optim.AdamW(net.parameters(), fused=True)
        net.loss(train_x[:64]).loss.backward()
        opt.step()  # an optimiser with its state, as after an epoch
        history = []
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2:
            checkpoint.save(net, opt, history, device)
            n += 1
        save = (time.perf_counter() - start) / n
        size = checkpoint.path.stat().st_size
    steady = {k: min(v[1:] or v) for k, v in times.items()}  # the first epoch pays for warm-up
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, {args.train_size} images, VAE "
          f"{sum(t.numel() for t in net.parameters()):,} weights")
    print(f"epoch without checkpoint {steady['without']:.3f} s, with {steady['with']:.3f} s "
          f"({steady['with'] / steady['without'] - 1:+.1%})")
    print(f"one checkpoint write {save * 1e3:.1f} ms ({size / 2**20:.1f} MiB): "
          f"{save / steady['without']:.2%} of an epoch")


if __name__ == "__main__":
    main()
