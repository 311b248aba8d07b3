"""evaluate: both autoencoders on the 10,000 test images, into metrics/evaluate.json (see README, Metrics)."""

import torch

from aevae import config, data, model, run_stage
from aevae.evaluate import classify, frechet_distance, model_metrics
from aevae.files import write_json


def main():
    p = config.load()
    train_x, train_y = data.load("data/mnist", "train")
    test_x, test_y = data.load("data/mnist", "test")
    classifier = model.load("models/classifier.pt")
    reference, _ = classify(classifier, test_x)

    # The autoencoders are scored on what they were trained on: a fixed binarisation, if any.
    seen = data.binarized if p.data.binarize == "dynamic" else (lambda x: x)
    inputs = (seen(train_x), train_y, seen(test_x), test_y)
    torch.manual_seed(p.evaluate.seed)  # the VAE's z samples
    out = {kind: model_metrics(model.load(f"models/{kind}.pt"), classifier, reference, inputs, p.evaluate)
           for kind in ("ae", "vae")}
    # The floor: real images that are not the test set, as far from it as samples could hope to be.
    out["train_set"] = {"frechet": frechet_distance(classify(classifier, train_x[: len(test_x)])[0], reference)}
    out["iw_samples"] = p.evaluate.iw_samples
    write_json("metrics/evaluate.json", out)


if __name__ == "__main__":
    run_stage(main)
