"""train_ae / train_vae: `python stages/train.py KIND` trains one autoencoder (aevae.model.KINDS),
logging each epoch with DVCLive into metrics/KIND/train/, then writes its model; its training time
goes to a file no stage reads. A killed run resumes from its checkpoint (checkpoints/KIND.pt)."""

import dataclasses

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
import torch

from aevae import config, data, harness, model, run_command


def reads(kind: str) -> list[str]:
    """The params train_<kind> reads: its `params:` in dvc.yaml (tests/test_harness.py holds them equal).
    The model's own section comes last, if it has one (the AE's `ae`, the VAE's `vae`)."""
    own = [kind] if kind in {f.name for f in dataclasses.fields(config.Params)} else []
    return ["data.train_size", "data.binarize", "model", "train", *own]


def main(kind):
    p = config.load()
    with harness.training(kind, p, "train", __file__) as run:
        train_x, _ = data.load("data/mnist", "train", p.data.train_size)  # An autoencoder needs no labels.
        test_x, _ = data.load("data/mnist", "test")
        net = model.build(kind, p)
        # The KL's weight beside each epoch's losses: under warm-up, below beta (evaluate's) until it ends.
        kl_weight = (lambda epoch: {"kl_weight": net.kl_weight(epoch)}) if net.density else None
        run.fit(net, (train_x,), (data.eval_images(test_x, p.data.binarize, "test"),), reads(kind),
                data.batch_transform(p.data.binarize), kl_weight)
        # The AE's sampling density, fitted to the training set's codes (the VAE has its N(0, I)).
        fit = net.fit_prior(data.eval_images(train_x, p.data.binarize, "train").to(run.device),
                            torch.Generator(run.device).manual_seed(p.train.seed))
        for key, value in fit.items():  # e.g. the mixture's EM iterations, in the training log's summary
            run.log.summary(f"prior/{key}", value)
        model.save(net, f"models/{kind}.pt")


if __name__ == "__main__":
    run_command(main, model.KINDS)
