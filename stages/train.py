"""train_ae / train_vae: `python stages/train.py ae|vae` trains one model and writes its model, curves and metrics."""

import sys

import torch

from aevae import UserError, config, data, model, run_stage
from aevae.files import write_csv, write_json
from aevae.train import fit, resolve_device, summary


def main():
    kind = sys.argv[1] if len(sys.argv) == 2 else None
    if kind not in model.MODELS:
        raise UserError(f"usage: train.py MODEL, with MODEL one of {', '.join(model.MODELS)}")
    p = config.load()
    section = "classifier" if kind == "classifier" else "train"
    cfg = getattr(p, section)
    device = resolve_device(cfg.device, f"{section}.device")
    torch.manual_seed(cfg.seed)
    if kind == "classifier":  # an instrument for evaluate, with its own params
        net, transform = model.Classifier(), None
        train, test = data.load("data/mnist", "train", cfg.train_size), data.load("data/mnist", "test")
    else:  # the autoencoders learn from images alone
        train, test = data.load("data/mnist", "train", p.data.train_size)[:1], data.load("data/mnist", "test")[:1]
        if p.data.binarize == "dynamic":
            transform, test = torch.bernoulli, (data.binarized(test[0]),)
        else:
            transform = None
        if kind == "ae":
            net = model.AE(p.model.hidden_dims, p.model.z_dim)
        else:
            net = model.VAE(p.model.hidden_dims, p.model.z_dim, p.vae.beta, p.vae.likelihood)
    rows = fit(net, train, test, cfg, device, transform, section)

    # Only now, all three: a run that fails or is killed leaves the previous outputs as they were.
    model.save(net, f"models/{kind}.pt")
    write_csv(f"plots/{kind}/losses.csv", rows)
    write_json(f"metrics/{kind}.json", summary(rows))


if __name__ == "__main__":
    run_stage(main)
