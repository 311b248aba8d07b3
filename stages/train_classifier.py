"""train_classifier: the CNN whose features score samples (evaluate), logged with DVCLive into
metrics/classifier/train/ with its accuracy and the floor of its Frechet distance: real training
images against the test set, as close as samples could hope to be."""

import aevae  # first: it answers MKL's CPU check before torch loads MKL (aevae.runtime)

# isort: split
from aevae import classifier, config, data, run_command, trainer


def main():
    p = config.load()
    with trainer.stage("classifier", p, "classifier", __file__) as run:
        train = data.load("data/mnist", "train", p.classifier.train_size)
        test = data.load("data/mnist", "test")
        net = classifier.Classifier()
        last = run.train(net, train, test)
        scorer = classifier.for_scoring(net.cpu())
        scorer.reference = classifier.gaussian(classifier.classify(scorer, test[0])[0])
        floor, _ = classifier.classify(scorer, data.load("data/mnist", "train", len(test[0]))[0])
        run.log.summary("test/accuracy", 1 - last["test"]["misclassified"])
        run.log.summary("frechet_train_set", classifier.frechet_distance(classifier.gaussian(floor), scorer.reference))
        classifier.save(scorer, "models/classifier.pt")


if __name__ == "__main__":
    run_command(main)
