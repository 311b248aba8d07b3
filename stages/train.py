"""train_ae / train_vae: `python stages/train.py KIND` trains one autoencoder (aevae.model.KINDS) and
writes its model, its curves and its metrics; its training time goes to a file no stage reads."""

import torch

from aevae import UserError, config, data, model, run_stage, runtime
from aevae.files import write_csv, write_json
from aevae.train import Diverged, fit, resolve_device, summary


def main(kind):
    p = config.load()
    runtime.setup(p.threads)
    device = resolve_device(p.train.device, "train.device")
    train_x, _ = data.load("data/mnist", "train", p.data.train_size)  # images alone
    test_x, _ = data.load("data/mnist", "test")
    torch.manual_seed(p.train.seed)
    net = model.build(kind, p)
    try:
        rows, seconds = fit(net, (train_x,), (data.seen(test_x, p.data.binarize),), p.train, device,
                            data.transform(p.data.binarize))
    except Diverged as e:
        raise UserError(f"{e}; try a smaller train.lr (now {p.train.lr})") from None

    # Only now, all of them: a run that fails or is killed leaves the previous outputs as they were.
    model.save(net, f"models/{kind}.pt")
    write_csv(f"plots/{kind}/losses.csv", rows)
    write_json(f"metrics/{kind}/train.json", summary(rows))
    write_json(f"metrics/{kind}/time.json", {"train_seconds": round(sum(seconds), 2)})


if __name__ == "__main__":
    run_stage(main, model.KINDS)
