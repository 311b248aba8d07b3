"""The instrument that scores samples: a small CNN trained on MNIST, and its features.

Sample quality is measured the way the literature does on MNIST: in the feature space of a classifier
trained on MNIST (Inception features mean little on digits), by the Frechet distance (aevae.frechet)
to the test set's features and by how confidently the classifier labels the samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aevae import modelfile


class ClassifierLosses(NamedTuple):
    loss: torch.Tensor  # cross-entropy, summed over the batch
    misclassified: torch.Tensor  # examples in the batch the classifier gets wrong; not "error", which DVC reads as a failure


class Classifier(nn.Module):
    """Its penultimate layer is the feature space of the sample-quality metrics. It carries the Gaussian
    fitted to the test set's features (`reference`), which every Frechet distance is taken against:
    computed once, when it is trained, not again by every evaluation."""

    def __init__(self):
        super().__init__()
        self.register_buffer("reference_mean", torch.zeros(128, dtype=torch.float64))
        self.register_buffer("reference_cov", torch.zeros(128, 128, dtype=torch.float64))
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            # Each pool before its ReLU: max and ReLU commute, so these are the same numbers, and the
            # same gradients, as ReLU then pool, with the ReLU on a quarter of the values.
            nn.Conv2d(1, 32, 5), nn.MaxPool2d(2), nn.ReLU(),   # 32 x 12 x 12
            nn.Conv2d(32, 64, 5), nn.MaxPool2d(2), nn.ReLU(),  # 64 x 4 x 4
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, 10))  # without dropout it overfits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean and covariance of the test set's features (aevae.frechet.gaussian), set once trained."""
        return self.reference_mean, self.reference_cov

    @reference.setter
    def reference(self, gaussian: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.reference_mean, self.reference_cov = gaussian

    def loss(self, x: torch.Tensor, y: torch.Tensor, epoch: int | None = None) -> ClassifierLosses:
        logits = self(x).float()  # float32 even under bf16 autocast
        return ClassifierLosses(F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) != y).sum().float())


def for_scoring(classifier: Classifier) -> Classifier:
    """The classifier as every score is taken with it: in eval mode, its weights channels-last, the layout
    in which oneDNN convolves one-channel images fastest (docs/performance.md). Training keeps the default
    layout. The layout moves the features in the 6th digit, so the reference and every score share it."""
    return classifier.eval().to(memory_format=torch.channels_last)


@torch.no_grad()
def classify(classifier: Classifier, x: torch.Tensor, batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's penultimate features and class probabilities for images x (a classifier
    `for_scoring`, as `load` gives it)."""
    feats = torch.cat([classifier.features(xb) for xb in x.split(batch_size)])
    return feats, classifier.head(feats).softmax(1)


def save(model: Classifier, path: str | Path) -> None:
    """The model file (aevae.modelfile), with no model args: the network takes no params."""
    modelfile.save(path, "classifier", {}, model)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Classifier:
    """The classifier saved at `path`, `for_scoring` on `device`."""
    return for_scoring(modelfile.load(path, {"classifier": lambda args, version: Classifier()}, device))
