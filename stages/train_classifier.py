"""train_classifier: the CNN whose features score samples (evaluate), its accuracy, and the floor of
its Frechet distance: real training images against the test set, as close as samples could hope to be."""

import torch

from aevae import UserError, classifier, config, data, run_stage, runtime
from aevae.files import write_csv, write_json
from aevae.train import Diverged, fit, resolve_device, summary


def main():
    p = config.load()
    runtime.setup(p.threads)
    cfg = p.classifier
    device = resolve_device(cfg.device, "classifier.device")
    train = data.load("data/mnist", "train", cfg.train_size)
    test = data.load("data/mnist", "test")
    torch.manual_seed(cfg.seed)
    net = classifier.Classifier()
    try:
        rows, seconds = fit(net, train, test, cfg, device)
    except Diverged as e:
        raise UserError(f"{e}; try a smaller classifier.lr (now {cfg.lr})") from None

    net.cpu()
    reference, _ = classifier.classify(net, test[0])
    floor, _ = classifier.classify(net, data.load("data/mnist", "train", len(test[0]))[0])
    metrics = summary(rows)
    metrics |= {"test_accuracy": 1 - metrics["test_error"], "frechet_train_set": classifier.frechet_distance(
        floor, reference)}
    classifier.save(net, "models/classifier.pt")
    write_csv("plots/classifier/losses.csv", rows)
    write_json("metrics/classifier/train.json", metrics)
    write_json("metrics/classifier/time.json", {"train_seconds": round(sum(seconds), 2)})


if __name__ == "__main__":
    run_stage(main)
