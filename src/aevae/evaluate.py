"""Test-set figures for trained models, and the AE's fitted-Gaussian sampler (the article's section 1.1)."""

from __future__ import annotations

import torch

from aevae.model import AE, Autoencoder, VAE, recon_loss


@torch.no_grad()
def reconstruction_metrics(model: Autoencoder, x: torch.Tensor, batch_size: int = 2000) -> dict[str, float]:
    """Per-image means over x: squared error and cross-entropy of the reconstruction (both summed over
    pixels, whatever the model was trained with), KL (VAE only), and the model's own training loss.

    A VAE reconstructs from one sampled z per image, so its `loss` is a one-sample negative ELBO.
    """
    model.eval()
    sums = torch.zeros(4)
    for xb in x.split(batch_size):
        logits, kl = model(xb)
        mse, bce = recon_loss(logits, xb, "gaussian"), recon_loss(logits, xb, "bernoulli")
        own = mse if model.likelihood == "gaussian" else bce
        sums += torch.stack([mse.sum(), bce.sum(), kl.sum(), (own + model.beta * kl).sum()]).cpu()
    mse, bce, kl, loss = (sums / len(x)).tolist()
    out = {"mse": mse, "bce": bce, "kl": kl, "loss": loss}
    if isinstance(model, AE):
        del out["kl"]
    return out


@torch.no_grad()
def codes(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """The AE's codes, or the VAE's posterior means."""
    model.eval()
    z = model.encode(x)
    return z[0] if isinstance(model, VAE) else z


@torch.no_grad()
def reconstruct(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    """Decoded images; a VAE decodes one z sampled from q(z|x), as in its loss."""
    model.eval()
    return model(x)[0].sigmoid()


@torch.no_grad()
def sample(model: Autoencoder, n: int, generator: torch.Generator, fitted_to: torch.Tensor | None = None):
    """Decode n latent draws: from N(0, I), or from a Gaussian per latent dim fitted to `fitted_to` codes.

    The fitted Gaussian is how the article samples an AE, whose codes follow no distribution of their own.
    """
    model.eval()
    eps = torch.randn(n, model.z_dim, generator=generator)
    if fitted_to is not None:
        eps = fitted_to.mean(0) + fitted_to.std(0) * eps
    return model.decode(eps)
