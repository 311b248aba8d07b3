"""train_classifier: the CNN whose features score samples (evaluate), logged with DVCLive into
metrics/classifier/train/ with its accuracy and the floor of its Frechet distance: real training
images against the test set, as close as samples could hope to be."""

from dataclasses import asdict

import torch

from aevae import UserError, classifier, config, data, live, run_stage, runtime
from aevae.files import write_json
from aevae.runtime import resolve_device, warn_precision
from aevae.train import Diverged, checkpoint_for, fit


def main():
    p = config.load()
    cfg = p.classifier
    runtime.setup(p.threads, pin=cfg.precision == "float32")
    device = resolve_device(cfg.device, "classifier.device")
    warn_precision(cfg.precision, device, "classifier.precision")
    train = data.load("data/mnist", "train", cfg.train_size)
    test = data.load("data/mnist", "test")
    torch.manual_seed(cfg.seed)
    net = classifier.Classifier()
    checkpoint = checkpoint_for("classifier", {"classifier": asdict(cfg)}, __file__)
    try:
        with live.logger("metrics/classifier/train") as log:
            last, seconds = live.log_epochs(log, fit(net, train, test, cfg, device, checkpoint=checkpoint))
            net.cpu().calibrate(test[0])
            floor, _ = classifier.classify(net, data.load("data/mnist", "train", len(test[0]))[0])
            log.start().log_metric("test/accuracy", 1 - last["test"]["error"], plot=False)
            log.start().log_metric("frechet_train_set", classifier.frechet_distance(classifier.gaussian(floor),
                                                                                    net.reference), plot=False)
            classifier.save(net, "models/classifier.pt")
            write_json("metrics/classifier/time.json", {"train_seconds": round(seconds, 2)})
        checkpoint.remove()
    except Diverged as e:
        raise UserError(f"{e}; try a smaller classifier.lr (now {cfg.lr})") from None


if __name__ == "__main__":
    run_stage(main)
