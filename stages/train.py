"""train_ae / train_vae: `python stages/train.py KIND` trains one autoencoder (aevae.model.KINDS),
logging each epoch with DVCLive into metrics/KIND/train/, then writes its model; its training time
goes to a file no stage reads. A killed run resumes from its checkpoint (checkpoints/KIND.pt)."""

from dataclasses import asdict

import torch

from aevae import config, data, model, run_stage, stage


def main(kind):
    p = config.load()
    with stage.training(kind, p, "train", __file__) as run:
        train_x, _ = data.load("data/mnist", "train", p.data.train_size)  # images alone
        test_x, _ = data.load("data/mnist", "test")
        net = model.build(kind, p)
        read = {"data": [p.data.train_size, p.data.binarize], "model": asdict(p.model), "train": asdict(p.train),
                kind: asdict(getattr(p, kind))}
        # The KL's weight beside each epoch's losses: under warm-up, below beta (evaluate's) until it ends.
        kl_weight = (lambda epoch: {"kl_weight": net.kl_weight(epoch)}) if net.density else None
        run.fit(net, (train_x,), (data.eval_images(test_x, p.data.binarize, "test"),), read,
                data.batch_transform(p.data.binarize), kl_weight)
        # The AE's sampling density, fitted to the training set's codes (the VAE has its N(0, I)).
        fit = net.fit_prior(data.eval_images(train_x, p.data.binarize, "train").to(run.device),
                            torch.Generator(run.device).manual_seed(p.train.seed))
        for key, value in fit.items():  # e.g. the mixture's EM iterations, in the training log's summary
            run.log.summary(f"prior/{key}", value)
        model.save(net, f"models/{kind}.pt")


if __name__ == "__main__":
    run_stage(main, model.KINDS)
