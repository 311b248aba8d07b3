"""The instrument that scores samples: a small CNN trained on MNIST, its features, and the Frechet
distance between feature sets.

Sample quality is measured the way the literature does on MNIST: in the feature space of a classifier
trained on MNIST (Inception features mean little on digits), by the Frechet distance to the test
set's features and by how confidently the classifier labels the samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aevae import checkpoint
from aevae.runtime import one_thread


class Losses(NamedTuple):
    loss: torch.Tensor  # cross-entropy, summed over the batch
    error: torch.Tensor  # misclassified examples in the batch


class Classifier(nn.Module):
    """Its penultimate layer is the feature space of the sample-quality metrics. It carries the Gaussian
    fitted to the test set's features (`calibrate`), which every Frechet distance is taken against:
    computed once, when it is trained, not again by every evaluation."""

    def __init__(self):
        super().__init__()
        self.args = {}
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
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, 10))  # without it, 98.7% and overfitting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def calibrate(self, test_x: torch.Tensor) -> None:
        """Fit the reference Gaussian to the features of the test images."""
        self.reference_mean, self.reference_cov = gaussian(classify(self, test_x)[0])

    @property
    def reference(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.reference_mean, self.reference_cov

    def loss(self, x: torch.Tensor, y: torch.Tensor, epoch: int | None = None) -> Losses:
        logits = self(x).float()  # float32 even under bf16 autocast
        return Losses(F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) != y).sum().float())


@torch.no_grad()
def classify(classifier: Classifier, x: torch.Tensor, batch_size: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's penultimate features and class probabilities for images x.

    Leaves the classifier's weights channels-last, where oneDNN convolves a one-channel image faster
    (docs/performance.md; the features move in the 6th digit); training keeps the default layout.
    """
    classifier.eval().to(memory_format=torch.channels_last)
    feats = torch.cat([classifier.features(xb) for xb in x.split(batch_size)])
    return feats, classifier.head(feats).softmax(1)


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of a feature set, in float64."""
    feats = feats.double()
    return feats.mean(0), torch.cov(feats.T)


def frechet_distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two Gaussians (`gaussian`'s)."""
    (mu_a, s_a), (mu_b, s_b) = a, b
    with one_thread():  # LAPACK's eigensolvers split their sums by thread count: the same bits at any
        return _frechet(mu_a, s_a, mu_b, s_b)


def _frechet(mu_a, s_a, mu_b, s_b) -> float:
    # Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, whose matrix is symmetric: eigenvalues, no sqrtm.
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


def save(model: Classifier, path: str | Path) -> None:
    checkpoint.save(model, "classifier", path)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Classifier:
    return checkpoint.load(path, {"classifier": Classifier}, device)
