"""train_ae / train_vae: `python stages/train.py KIND` trains one autoencoder (aevae.model.KINDS),
logging each epoch with DVCLive into metrics/KIND/train/, then writes its model; its training time
goes to a file no stage reads. A killed run resumes from its checkpoint (checkpoints/KIND.pt)."""

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
import torch

from aevae import config, data, model, run_command, trainer


def main(kind):
    p = config.load()
    with trainer.stage(kind, p, "train", __file__) as run:
        train_x, _ = data.load("data/mnist", "train", p.data.train_size)  # An autoencoder needs no labels.
        test_x, _ = data.load("data/mnist", "test")
        net = model.build(kind, p)
        # Under KL warm-up the KL's weight is below beta, evaluate's, until the warm-up ends: logged beside the losses.
        run.train(net, (train_x,), (data.eval_images(test_x, p.data.binarize, "test"),),
                  data.batch_transform(p.data.binarize), {"kl_weight": net.kl_weight} if net.density else {})
        # The AE's sampling density, estimated from the training set's codes (the VAE has its N(0, I)).
        report = net.estimate_prior(data.eval_images(train_x, p.data.binarize, "train").to(run.device),
                                    torch.Generator(run.device).manual_seed(p.train.seed))
        for key, value in report.items():  # e.g. the mixture's EM iterations, in the training log's summary
            run.log.summary(f"prior/{key}", value)
        model.save(net, f"models/{kind}.pt")


if __name__ == "__main__":
    run_command(main, model.KINDS)
