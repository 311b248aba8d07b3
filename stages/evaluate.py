"""evaluate@KIND: `python stages/evaluate.py KIND` scores one autoencoder on the 10,000 test images
into metrics/KIND/evaluate.json (README, Metrics)."""

import time

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
import torch

from aevae import classifier, config, data, model, run_command, runtime, write_json
from aevae.scores import model_metrics


def main(kind):
    start = time.perf_counter()
    p = config.load()
    runtime.setup()
    device = runtime.resolve_device(p.evaluate.device, "evaluate.device")
    train_x, train_y = data.load("data/mnist", "train", p.data.train_size)  # The images the model was trained on.
    test_x, test_y = data.load("data/mnist", "test")
    scorer = classifier.load("models/classifier.pt", device)
    net = model.load(f"models/{kind}.pt", device)

    # The autoencoder is scored on what it was trained on: a fixed binarisation, if any.
    inputs = (data.eval_images(train_x, p.data.binarize, "train"), train_y,
              data.eval_images(test_x, p.data.binarize, "test"), test_y)
    torch.manual_seed(p.evaluate.seed)  # the VAE's z samples
    metrics, is_seconds = model_metrics(net, scorer, [t.to(device) for t in inputs], p.evaluate)
    write_json(f"metrics/{kind}/evaluate.json", metrics)
    # One point per run, for the scatter plots across experiments (dvc.yaml): Alemi et al.'s (2018)
    # rate (KL per image; none for a model without a prior) against distortion, and against quality.
    point = {"model": kind, "rate": metrics.get("kl"), "distortion": metrics["recon"],
             "frechet_samples": metrics["frechet_samples"]}
    write_json(f"plots/{kind}/point.json", [point])
    # Wall times, which no stage reads: the importance sampling, and the rest of the stage from its start
    # (reading the data and the models included; Python's and torch's imports not).
    rest = time.perf_counter() - start - is_seconds
    write_json(f"metrics/{kind}/evaluate_time.json", {"nll_is_seconds": round(is_seconds, 2),
                                                      "rest_seconds": round(rest, 2), "device": device.type})


if __name__ == "__main__":
    run_command(main, model.KINDS)
