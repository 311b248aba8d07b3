"""p(x|z), the decoder's likelihood over 784 pixels, from the decoder's logits: the loss that trains a
model, the normalised density that ELBOs and NLLs are made of, and the image a model stands for.

`likelihood` names one: gaussian, bernoulli or continuous_bernoulli (params.yaml's vae.likelihood;
the AE's is the gaussian).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import ContinuousBernoulli

IMAGE_SIDE = 28
IMAGE_DIM = IMAGE_SIDE * IMAGE_SIDE
LOG_2PI = math.log(2 * math.pi)
# -log N(x; mu, I/2) - ||x - mu||^2: summed squared error is the NLL of a Gaussian of variance 1/2, up to this.
GAUSSIAN_NLL_CONSTANT = 0.5 * IMAGE_DIM * math.log(math.pi)
# ATen splits a tensor of more values than this between threads, one share each (at::internal::GRAIN_SIZE).
GRAIN = 32768


def same_at_any_thread_count(op):
    """`op`, an elementwise torch function, applied in blocks of GRAIN values, each of which ATen runs
    on one thread. ATen computes sigmoid and softplus with an AVX2 formula, and the few values at the end
    of each thread's share with a scalar one that can differ in the last bit; where the shares end
    depends on the thread count. In blocks, every value takes the formula it takes on one thread."""

    def blockwise(x: torch.Tensor) -> torch.Tensor:
        if x.numel() <= GRAIN or x.device.type != "cpu":
            return op(x)
        return torch.cat([op(block) for block in x.reshape(-1).split(GRAIN)]).view(x.shape)

    return blockwise


sigmoid = same_at_any_thread_count(torch.sigmoid)
softplus = same_at_any_thread_count(F.softplus)


def recon_loss(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels: squared error (gaussian), cross-entropy
    (bernoulli), or cross-entropy minus the log-normaliser (continuous_bernoulli: a proper density
    for grey pixels, where cross-entropy is not one)."""
    if likelihood == "gaussian":
        return F.mse_loss(sigmoid(logits), x, reduction="none").sum(-1)
    # From logits, not from sigmoid outputs: stays finite where the sigmoid saturates.
    nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    if likelihood == "continuous_bernoulli":
        nll = nll - cb_log_norm(logits)
    return nll.sum(-1)


def recon_nll(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """-log p(x|z) per image, in nats, as a normalised density: what ELBO and NLL bounds are made of."""
    nll = recon_loss(logits, x, likelihood)
    return nll + GAUSSIAN_NLL_CONSTANT if likelihood == "gaussian" else nll


def log_likelihoods(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """log p(x_n | z_g) for every image x_n (N rows) and every decoded z_g (G rows of logits), as an
    (N, G) matrix: one matmul, where -recon_nll over every pair would make N x G passes over the pixels."""
    if likelihood == "gaussian":
        mean = sigmoid(logits)
        return 2 * x @ mean.T - x.pow(2).sum(1, keepdim=True) - mean.pow(2).sum(1) - GAUSSIAN_NLL_CONSTANT
    out = x @ logits.T - softplus(logits).sum(1)  # sum of x log(lambda) + (1 - x) log(1 - lambda)
    return out + cb_log_norm(logits).sum(1) if likelihood == "continuous_bernoulli" else out


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda), the continuous Bernoulli's log-normaliser (Loaiza-Ganem & Cunningham 2019), from
    the logit l of lambda: C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2). At l = 0
    (lambda = 1/2) that is 0/0, so near it: the Taylor series, log 2 + l^2 / 12 (next term -7 l^4 / 1440)."""
    small = logits.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(logits), logits)
    return torch.where(small, math.log(2) + logits.pow(2) / 12, torch.log(safe / torch.tanh(safe / 2)))


def image_cross_entropy(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-image cross-entropy of x against the image the logits stand for (mean_image), summed over
    pixels: a figure about the reconstruction, whatever the likelihood."""
    if likelihood == "continuous_bernoulli":  # its mean is never 0 or 1, so the probabilities are safe
        return F.binary_cross_entropy(mean_image(logits, likelihood), x, reduction="none").sum(-1)
    return recon_loss(logits, x, "bernoulli")  # of sigmoid(logits), from the logits: finite where it saturates


def mean_image(logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """E[x|z], the image a decoder's logits stand for: lambda = sigmoid(l) for the gaussian and the
    bernoulli; the continuous Bernoulli's mean is not lambda, but pulled towards 1/2."""
    if likelihood == "continuous_bernoulli":
        return ContinuousBernoulli(probs=sigmoid(logits)).mean
    return sigmoid(logits)
