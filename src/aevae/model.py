"""The autoencoders: one interface, which evaluation, rendering, the bench and the tests use without
knowing which model they hold, and `build`, the one place that turns params into a model.

A new model is a subclass of Autoencoder here, an entry in KINDS and its params in params.yaml.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aevae import UserError, checkpoint

IMAGE_DIM = 28 * 28
LOG_2PI = math.log(2 * math.pi)
# -log N(x; mu, I/2) - ||x - mu||^2: summed squared error is the NLL of a Gaussian of variance 1/2, up to this.
GAUSSIAN_NLL_CONSTANT = 0.5 * IMAGE_DIM * math.log(math.pi)


class Losses(NamedTuple):
    """Loss terms, per image or summed over a batch; `loss` is what the optimiser minimises."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def mlp(dims: list[int], last_relu: bool = False) -> nn.Sequential:
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if last_relu or i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def recon_loss(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels: squared error (gaussian) or cross-entropy (bernoulli)."""
    if likelihood == "gaussian":
        return F.mse_loss(torch.sigmoid(logits), x, reduction="none").sum(-1)
    # From logits, not from sigmoid outputs: stays finite where the sigmoid saturates.
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """-log p(x|z) per image, in nats, as a normalised density: what ELBO and NLL bounds are made of."""
    nll = recon_loss(logits, x, likelihood)
    return nll + GAUSSIAN_NLL_CONSTANT if likelihood == "gaussian" else nll


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class Autoencoder(nn.Module):
    """What every autoencoder offers. A subclass gives `encoder`, `code`, `forward`, `prior` and the
    class attributes below; the decoder, the loss, reconstruction and sampling are shared.

    `density` says whether the model defines p(x), so that its KL, ELBO and importance-sampled
    likelihood exist; `code_name` and `prior_name` caption its codes and its samples in figures.
    """

    density = False
    code_name = "codes"
    prior_name = "prior"
    likelihood = "gaussian"
    beta = 0.0

    def __init__(self, hidden_dims: list[int], z_dim: int):
        super().__init__()
        self.args = {"hidden_dims": list(hidden_dims), "z_dim": z_dim}  # what a checkpoint rebuilds it from
        self.z_dim = z_dim
        self.decoder = mlp([z_dim, *reversed(hidden_dims), IMAGE_DIM])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder logits, and the KL term per image (zero where the code is deterministic)."""
        raise NotImplementedError

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The point in latent space that stands for x."""
        raise NotImplementedError

    def prior(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation, per latent dim, of the Gaussian that samples are drawn from;
        `codes` are the test set's codes, for a model whose latent space has no distribution of its own."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def terms(self, logits: torch.Tensor, kl: torch.Tensor, x: torch.Tensor) -> Losses:
        """The loss terms per image, from one forward pass: recon under the model's likelihood + beta KL."""
        recon = recon_loss(logits, x, self.likelihood)
        return Losses(recon + self.beta * kl, recon, kl)

    def loss(self, x: torch.Tensor) -> Losses:
        """The loss terms summed over the batch, for the trainer."""
        return Losses(*(t.sum() for t in self.terms(*self(x), x)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded images, from the same latent draw as the loss (one sample of q(z|x) for a VAE)."""
        return self(x)[0].sigmoid()

    def sample(self, n: int, generator: torch.Generator, codes: torch.Tensor) -> torch.Tensor:
        """Decode n draws from the model's prior (see `prior`)."""
        mean, std = self.prior(codes)
        return self.decode(mean + std * torch.randn(n, self.z_dim, generator=generator))


class AE(Autoencoder):
    """The plain autoencoder: a deterministic code, squared error, no prior of its own."""

    prior_name = "z ~ Gaussian fitted to test codes"

    def __init__(self, hidden_dims: list[int], z_dim: int):
        super().__init__(hidden_dims, z_dim)
        self.encoder = mlp([IMAGE_DIM, *hidden_dims, z_dim])

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.code(x)), x.new_zeros(len(x))

    def prior(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The article's way to sample an AE: a Gaussian per latent dim, fitted to the codes.
        return codes.mean(0), codes.std(0)


class VAE(Autoencoder):
    """The variational autoencoder: q(z|x) = N(mu, diag(exp(logvar))), a N(0, I) prior, loss = recon + beta KL."""

    density = True
    code_name = "posterior means"
    prior_name = "z ~ N(0, I)"

    def __init__(self, hidden_dims: list[int], z_dim: int, beta: float = 1.0, likelihood: str = "gaussian"):
        super().__init__(hidden_dims, z_dim)
        self.args |= {"beta": beta, "likelihood": likelihood}
        self.beta, self.likelihood = beta, likelihood
        self.encoder = mlp([IMAGE_DIM, *hidden_dims], last_relu=True)
        # The mean and log-variance heads, as one layer: one matmul instead of two, same maths.
        self.head = nn.Linear(hidden_dims[-1], 2 * z_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.encoder(x)).chunk(2, dim=-1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decoder(self.reparameterize(mu, logvar)), kl_divergence(mu, logvar)

    def prior(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(self.z_dim), torch.ones(self.z_dim)

    def log_weights(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """log p(x, z) - log q(z|x) for k draws z ~ q(z|x) per image, shape (k, N): the importance
        weights whose log-mean-exp bounds log p(x) from below, tighter as k grows (Burda et al. 2015)."""
        mu, logvar = self.encode(x)
        eps = torch.randn(k, *mu.shape, device=x.device)
        z = mu + eps * (0.5 * logvar).exp()
        log_p_x_z = -recon_nll(self.decoder(z), x.expand(k, *x.shape), self.likelihood)
        log_p_z = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_q_z = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
        return log_p_x_z + log_p_z - log_q_z


KINDS = {"ae": AE, "vae": VAE}


def build(kind: str, p) -> Autoencoder:
    """The autoencoder `kind` as params.yaml (a config.Params) describes it."""
    m = p.model
    if kind == "ae":
        return AE(m.hidden_dims, m.z_dim)
    if kind == "vae":
        return VAE(m.hidden_dims, m.z_dim, p.vae.beta, p.vae.likelihood)
    raise UserError(f"unknown model '{kind}'; accepted: {', '.join(KINDS)}")


def save(model: Autoencoder, path: str | Path) -> None:
    checkpoint.save(model, next(k for k, cls in KINDS.items() if type(model) is cls), path)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Autoencoder:
    return checkpoint.load(path, KINDS, device)
