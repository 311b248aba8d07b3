"""The Frechet distance between two feature sets, each summarised by a Gaussian (Heusel et al. 2017's
FID, here in the features of the project's MNIST classifier, aevae.classifier)."""

from __future__ import annotations

import torch

from aevae.runtime import one_thread

# The most sweeps of the Jacobi method (`eigh`). Once the off-diagonal part is small, each sweep squares
# it (Golub & Van Loan 2013, 8.5.5): a covariance of the classifier's 128 features needs about 13.
MAX_SWEEPS = 30


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of a feature set (one row per image), in float64."""
    feats = feats.double()
    return feats.mean(0), torch.cov(feats.T)


def distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
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
