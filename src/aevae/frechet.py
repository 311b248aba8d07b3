"""The Frechet distance between two feature sets, each summarised by a Gaussian (Heusel et al. 2017's
FID, here in the features of the project's MNIST classifier, aevae.classifier)."""

from __future__ import annotations

import torch

from aevae.runtime import one_thread


def gaussian(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and covariance of a feature set (one row per image), in float64."""
    feats = feats.double()
    return feats.mean(0), torch.cov(feats.T)


def distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two Gaussians (`gaussian`'s)."""
    (mu_a, s_a), (mu_b, s_b) = a, b
    # LAPACK's eigensolvers split their sums by thread count; on one thread, every count gives the same bits.
    with one_thread():
        # Tr (S_a S_b)^1/2 = Tr (S_a^1/2 S_b S_a^1/2)^1/2, and that matrix is symmetric, so eigenvalues
        # give its square root (Dowson & Landau 1982); no general matrix square root is needed.
        vals, vecs = torch.linalg.eigh(s_a)
        root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
        cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
        return ((mu_a - mu_b).pow(2).sum() + s_a.trace() + s_b.trace() - 2 * cross).item()
