"""train_ae / train_vae: `python stages/train.py KIND` trains one autoencoder (aevae.model.KINDS),
logging each epoch with DVCLive into metrics/KIND/train/, then writes its model; its training time
goes to a file no stage reads. A killed run resumes from its checkpoint (checkpoints/KIND.pt)."""

from dataclasses import asdict

import torch

from aevae import UserError, config, data, live, model, run_stage, runtime
from aevae.files import write_json
from aevae.runtime import resolve_device, warn_precision
from aevae.train import Diverged, checkpoint_for, fit


def main(kind):
    p = config.load()
    runtime.setup(p.threads, pin=p.train.precision == "float32")
    device = resolve_device(p.train.device, "train.device")
    warn_precision(p.train.precision, device, "train.precision")
    train_x, _ = data.load("data/mnist", "train", p.data.train_size)  # images alone
    test_x, _ = data.load("data/mnist", "test")
    torch.manual_seed(p.train.seed)
    net = model.build(kind, p)
    # What this stage reads (dvc.yaml), less `threads`, which changes no byte.
    sections = {"data": [p.data.train_size, p.data.binarize], "model": asdict(p.model), "train": asdict(p.train),
                kind: asdict(getattr(p, kind))}
    checkpoint = checkpoint_for(kind, sections, __file__)
    epochs = fit(net, (train_x,), (data.seen(test_x, p.data.binarize),), p.train, device,
                 data.transform(p.data.binarize), checkpoint)  # a generator: it trains as it is logged
    try:
        with live.logger(f"metrics/{kind}/train") as log:
            _, seconds = live.log_epochs(log, epochs)
            # The AE's sampling density, fitted to the training set's codes (the VAE has its N(0, I)).
            net.fit_prior(data.seen(train_x, p.data.binarize).to(device),
                          torch.Generator(device).manual_seed(p.train.seed))
            # Written once training has finished: a run that fails or is killed leaves the previous model.
            model.save(net, f"models/{kind}.pt")
            write_json(f"metrics/{kind}/time.json", {"train_seconds": round(seconds, 2)})
        checkpoint.remove()
    except Diverged as e:
        raise UserError(f"{e}; try a smaller train.lr (now {p.train.lr})") from None


if __name__ == "__main__":
    run_stage(main, model.KINDS)
