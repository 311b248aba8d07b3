"""The plain autoencoder and the VAE: the same MLPs, differing only in what the encoder returns."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from aevae.files import atomic_path

IMAGE_DIM = 28 * 28


class Losses(NamedTuple):
    """Loss terms summed over a batch; `loss` is what the optimiser minimises."""

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


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class Autoencoder(nn.Module):
    """What both models share: the decoder, the loss, and enough arguments to rebuild from a checkpoint."""

    likelihood = "gaussian"
    beta = 0.0

    def __init__(self, hidden_dims: list[int], z_dim: int):
        super().__init__()
        self.z_dim = z_dim
        self.decoder = mlp([z_dim, *reversed(hidden_dims), IMAGE_DIM])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def loss(self, x: torch.Tensor) -> Losses:
        logits, kl = self(x)
        recon = recon_loss(logits, x, self.likelihood).sum()
        kl = kl.sum()
        return Losses(recon + self.beta * kl, recon, kl)


class AE(Autoencoder):
    def __init__(self, hidden_dims: list[int], z_dim: int):
        super().__init__(hidden_dims, z_dim)
        self.args = dict(hidden_dims=list(hidden_dims), z_dim=z_dim)
        self.encoder = mlp([IMAGE_DIM, *hidden_dims, z_dim])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoder logits and the KL term per image, which a deterministic code does not have."""
        return self.decoder(self.encode(x)), x.new_zeros(len(x))


class VAE(Autoencoder):
    def __init__(self, hidden_dims: list[int], z_dim: int, beta: float = 1.0, likelihood: str = "gaussian"):
        super().__init__(hidden_dims, z_dim)
        self.args = dict(hidden_dims=list(hidden_dims), z_dim=z_dim, beta=beta, likelihood=likelihood)
        self.beta, self.likelihood = beta, likelihood
        self.encoder = mlp([IMAGE_DIM, *hidden_dims], last_relu=True)
        # The mean and log-variance heads, as one layer: one matmul instead of two, same maths.
        self.head = nn.Linear(hidden_dims[-1], 2 * z_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.encoder(x)).chunk(2, dim=-1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decoder(self.reparameterize(mu, logvar)), kl_divergence(mu, logvar)


class ClassifierLosses(NamedTuple):
    loss: torch.Tensor  # cross-entropy, summed over the batch
    error: torch.Tensor  # misclassified examples in the batch


class Classifier(nn.Module):
    """A small CNN for MNIST. Its penultimate layer is the feature space of the sample-quality
    metrics: Inception features mean little on digits, a classifier trained on them is the usual choice."""

    def __init__(self):
        super().__init__()
        self.args = {}
        self.features = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),   # 32 x 12 x 12
            nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2),  # 64 x 4 x 4
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, 10))  # without it, 98.7% and overfitting

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> ClassifierLosses:
        logits = self(x)
        return ClassifierLosses(F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) != y).sum().float())


MODELS = {"ae": AE, "vae": VAE, "classifier": Classifier}


def save(model: nn.Module, path: str | Path) -> None:
    kind = next(k for k, cls in MODELS.items() if type(model) is cls)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"kind": kind, "args": model.args, "state_dict": state}, tmp)


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = MODELS[ckpt["kind"]](**ckpt["args"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()
