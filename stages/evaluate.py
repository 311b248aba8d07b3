"""evaluate: test-set reconstruction and KL figures of both models into metrics/evaluate.json."""

import torch

from aevae import config, data, model, run_stage
from aevae.evaluate import reconstruction_metrics
from aevae.files import write_json


def main():
    p = config.load()
    test_x, _ = data.load("data/mnist", "test")
    torch.manual_seed(p.evaluate.seed)  # the VAE's z samples
    write_json(
        "metrics/evaluate.json",
        {kind: reconstruction_metrics(model.load(f"models/{kind}.pt"), test_x) for kind in model.MODELS},
    )


if __name__ == "__main__":
    run_stage(main)
