"""train_classifier: the CNN whose features score samples (evaluate), logged with DVCLive into
metrics/classifier/train/ with its accuracy and the floor of its Frechet distance: real training
images against the test set, as close as samples could hope to be."""

from aevae import classifier, config, data, frechet, harness, run_command

READS = ["classifier"]  # its `params:` in dvc.yaml (tests/test_harness.py holds them equal)


def main():
    p = config.load()
    cfg = p.classifier
    with harness.training("classifier", p, "classifier", __file__) as run:
        train = data.load("data/mnist", "train", cfg.train_size)
        test = data.load("data/mnist", "test")
        net = classifier.Classifier()
        last = run.fit(net, train, test, READS)
        scorer = classifier.for_scoring(net.cpu())
        scorer.reference = frechet.gaussian(classifier.classify(scorer, test[0])[0])
        floor, _ = classifier.classify(scorer, data.load("data/mnist", "train", len(test[0]))[0])
        run.log.summary("test/accuracy", 1 - last["test"]["misclassified"])
        run.log.summary("frechet_train_set", frechet.distance(frechet.gaussian(floor), scorer.reference))
        classifier.save(scorer, "models/classifier.pt")


if __name__ == "__main__":
    run_command(main)
