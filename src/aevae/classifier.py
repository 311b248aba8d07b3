"""The instrument that scores samples: a small CNN trained on MNIST, its features, and the Frechet
distance between two sets of them.

Sample quality is measured the way the literature does on MNIST: in the feature space of a classifier
trained on MNIST (Inception features mean little on digits), by the Frechet distance to the test set's
features (Heusel et al. 2017's FID, in this classifier's features) and by how confidently the classifier
labels the samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aevae import read_model, write_model
from aevae.runtime import one_thread


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
        """The mean and covariance of the test set's features (`gaussian`), set once trained."""
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
    """The model file (aevae.write_model), with no model args: the network takes no params."""
    write_model(path, "classifier", {}, model)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Classifier:
    """The classifier saved at `path`, `for_scoring` on `device`."""
    return for_scoring(read_model(path, {"classifier": lambda args, version: Classifier()}, device))


# The most sweeps of the Jacobi method (`eigh`). Once the off-diagonal part is small, each sweep squares
# it (Golub & Van Loan 2013, 8.5.5): a covariance of the classifier's 128 features needs about 13.
MAX_SWEEPS = 30


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of a feature set (one row per image), in float64."""
    feats = feats.double()
    return feats.mean(0), torch.cov(feats.T)


def frechet_distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two Gaussians (`gaussian`'s)."""
    (mu_a, s_a), (mu_b, s_b) = a, b
    # A feature that is 0 on every image of either set (a ReLU that never fires) adds nothing to the cross
    # term: it is left out of the eigenproblems, which shrink by a quarter on this classifier.
    live = (s_a.diagonal() > 0) & (s_b.diagonal() > 0)
    s_a_live, s_b_live = s_a[live][:, live], s_b[live][:, live]
    # Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, and that matrix is symmetric, so eigenvalues
    # give its square root (Dowson & Landau 1982); rounding can leave a zero eigenvalue slightly negative.
    with one_thread():  # rotations of a few thousand values each: threads would only wait for each other
        vals, vecs = eigh(s_a_live)
        root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
        cross = eigh(root_a @ s_b_live @ root_a)[0].clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()


def eigh(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvalues and eigenvectors (columns) of a symmetric matrix, by the cyclic Jacobi method
    (Golub & Van Loan 2013, 8.5): each sweep rotates every plane (p, q) once, in n - 1 rounds of
    disjoint planes, each round one rotation matrix. LAPACK's eigensolvers, the usual route, run code
    that differs between CPUs and thread counts in the last bits, which the square roots of a covariance's
    near-zero eigenvalues grow to the distance's 9th digit. The rotations are matrix products, which MKL
    computes under the strict pin (aevae.runtime) to the same bytes everywhere; and Jacobi finds small
    eigenvalues to high relative accuracy (Demmel & Veselic 1992). It sweeps until the off-diagonal
    part is below float64's resolution of the matrix, or MAX_SWEEPS times."""
    m = len(a)
    n = m + m % 2  # an odd matrix gets a zero row and column, which no rotation touches
    a = torch.nn.functional.pad(a, (0, n - m, 0, n - m))
    v = torch.eye(n, dtype=a.dtype, device=a.device)
    rounds = round_robin(n, a.device)
    for _ in range(MAX_SWEEPS):
        if (a - torch.diag(a.diagonal())).norm() <= torch.finfo(a.dtype).eps * a.norm():
            break
        for p, q in rounds:  # a rotation in each plane (p, q) zeroes a[p, q]
            app, aqq, apq = a[p, p], a[q, q], a[p, q]
            off = apq != 0
            tau = (aqq - app) / torch.where(off, 2 * apq, 1)
            t = torch.where(off, torch.where(tau >= 0, 1.0, -1.0) / (tau.abs() + (1 + tau * tau).sqrt()), 0)
            c = 1 / (1 + t * t).sqrt()
            s = t * c
            rotation = torch.zeros_like(a)  # the identity but in the planes (p, q): [[c, s], [-s, c]]
            rotation[p, p], rotation[q, q], rotation[p, q], rotation[q, p] = c, c, s, -s
            a = rotation.T @ a @ rotation
            v = v @ rotation
    return a.diagonal()[:m], v[:m, :m]


def round_robin(n: int, device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The n - 1 rounds of a round-robin tournament of n (even) players, as index pairs (p, q): every
    pair meets once, and no index twice in a round."""
    players, rounds = list(range(n)), []
    for _ in range(n - 1):
        half = n // 2
        rounds.append((torch.tensor(players[:half], device=device), torch.tensor(players[half:][::-1], device=device)))
        players = [players[0], players[-1], *players[1:-1]]
    return rounds
