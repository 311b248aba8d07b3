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
from torch.distributions import ContinuousBernoulli

from aevae import UserError, checkpoint
from aevae.runtime import one_thread

IMAGE_SIDE = 28
IMAGE_DIM = IMAGE_SIDE * IMAGE_SIDE
LOG_2PI = math.log(2 * math.pi)
# -log N(x; mu, I/2) - ||x - mu||^2: summed squared error is the NLL of a Gaussian of variance 1/2, up to this.
GAUSSIAN_NLL_CONSTANT = 0.5 * IMAGE_DIM * math.log(math.pi)


class Output(NamedTuple):
    """A forward pass: decoder logits, the KL term per image (zero where the code is deterministic),
    and the code (`Autoencoder.code`) of each image."""

    logits: torch.Tensor
    kl: torch.Tensor
    code: torch.Tensor


class Losses(NamedTuple):
    """Loss terms, per image or summed over a batch; `loss` is what the optimiser minimises."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def encoder(arch: str, hidden_dims: list[int], channels: list[int]) -> tuple[list[nn.Module], int]:
    """The encoder's layers, from flat images to its last hidden features (after a ReLU), and their
    width. mlp: a linear layer per `hidden_dims`; conv: a 4x4, stride-2 convolution per `channels`."""
    layers = []
    if arch == "mlp":
        width = IMAGE_DIM
        for d in hidden_dims:
            layers += [nn.Linear(width, d), nn.ReLU()]
            width = d
        return layers, width
    c, side = 1, IMAGE_SIDE
    layers.append(nn.Unflatten(1, (1, side, side)))
    for d in channels:
        layers += [nn.Conv2d(c, d, 4, stride=2, padding=1), nn.ReLU()]
        c, side = d, side // 2
    return layers + [nn.Flatten()], c * side * side


def decoder(arch: str, hidden_dims: list[int], channels: list[int], z_dim: int) -> nn.Sequential:
    """The encoder mirrored, from z to one logit per pixel."""
    if arch == "mlp":
        layers, width = [], z_dim
        for d in reversed(hidden_dims):
            layers += [nn.Linear(width, d), nn.ReLU()]
            width = d
        return nn.Sequential(*layers, nn.Linear(width, IMAGE_DIM))
    sides = [IMAGE_SIDE]
    for _ in channels:
        sides.append(sides[-1] // 2)
    c, side = channels[-1], sides[-1]
    layers = [nn.Linear(z_dim, c * side * side), nn.ReLU(), nn.Unflatten(1, (c, side, side))]
    outs = [1, *channels[:-1]]
    for i in reversed(range(len(channels))):
        # output_padding brings an odd side back (3 -> 7), which the stride-2 convolution halved down.
        layers.append(nn.ConvTranspose2d(channels[i], outs[i], 4, stride=2, padding=1,
                                         output_padding=sides[i] - 2 * sides[i + 1]))
        if i:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Flatten())


def recon_loss(logits: torch.Tensor, x: torch.Tensor, likelihood: str) -> torch.Tensor:
    """Per-image reconstruction loss summed over pixels: squared error (gaussian), cross-entropy
    (bernoulli), or cross-entropy minus the log-normaliser (continuous_bernoulli: a proper density
    for grey pixels, where cross-entropy is not one)."""
    if likelihood == "gaussian":
        return F.mse_loss(torch.sigmoid(logits), x, reduction="none").sum(-1)
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
        mean = torch.sigmoid(logits)
        return 2 * x @ mean.T - x.pow(2).sum(1, keepdim=True) - mean.pow(2).sum(1) - GAUSSIAN_NLL_CONSTANT
    out = x @ logits.T - F.softplus(logits).sum(1)  # sum of x log(lambda) + (1 - x) log(1 - lambda)
    return out + cb_log_norm(logits).sum(1) if likelihood == "continuous_bernoulli" else out


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda), the continuous Bernoulli's log-normaliser (Loaiza-Ganem & Cunningham 2019), from
    the logit l of lambda: C = 2 atanh(1 - 2 lambda) / (1 - 2 lambda) = l / tanh(l / 2). At l = 0
    (lambda = 1/2) that is 0/0, so near it: the Taylor series, log 2 + l^2 / 12 (next term l^4 / 1440)."""
    small = logits.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(logits), logits)
    return torch.where(small, math.log(2) + logits.pow(2) / 12, torch.log(safe / torch.tanh(safe / 2)))


def mean_image(logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """E[x|z], the image a decoder's logits stand for: lambda = sigmoid(l) for the gaussian and the
    bernoulli; the continuous Bernoulli's mean is not lambda, but pulled towards 1/2."""
    if likelihood == "continuous_bernoulli":
        return ContinuousBernoulli(logits=logits).mean
    return torch.sigmoid(logits)


def kl_weight(beta: float, warmup_epochs: int, epoch: int | None) -> float:
    """The KL term's weight in training epoch `epoch` (from 1): beta, ramped linearly up from 0 over the
    first `warmup_epochs` (Bowman et al. 2016); `epoch` None, for a trained model, is beta."""
    if epoch is None or not warmup_epochs:
        return beta
    return beta * min(1.0, (epoch - 1) / warmup_epochs)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class Autoencoder(nn.Module):
    """What every autoencoder offers. A subclass gives `code`, `forward`, `prior` and the class
    attributes below; the decoder, the loss, reconstruction and sampling are shared.

    `density` says whether the model defines p(x), so that its KL, ELBO and importance-sampled
    likelihood exist; `code_name` and `prior_name` caption its codes and its samples in figures.
    `epoch`, where a method takes it, is the training epoch (from 1) for an objective that changes
    during training (KL warm-up); None, the default, is the trained model's objective.
    The networks are `arch`'s (see `encoder`): mlp reads `hidden_dims`, conv reads `channels`.
    """

    density = False
    code_name = "codes"
    prior_name = "prior"
    likelihood = "gaussian"

    def __init__(self, hidden_dims: list[int], z_dim: int, arch: str = "mlp", channels: list[int] = (32, 64)):
        super().__init__()
        # What a checkpoint rebuilds the model from.
        self.args = {"hidden_dims": list(hidden_dims), "z_dim": z_dim, "arch": arch, "channels": list(channels)}
        self.z_dim = z_dim
        self.decoder = decoder(arch, hidden_dims, channels, z_dim)

    def forward(self, x: torch.Tensor) -> Output:
        raise NotImplementedError

    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The point in latent space that stands for x."""
        raise NotImplementedError

    def prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n draws from the distribution over latent space that samples are decoded from."""
        raise NotImplementedError

    def kl_weight(self, epoch: int | None = None) -> float:
        """The KL term's weight in the loss."""
        return 0.0

    def fit_prior(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """After training, fit what `prior_sample` draws from to the training images x, if the model
        has no prior of its own."""

    def image(self, logits: torch.Tensor) -> torch.Tensor:
        """The image decoder logits stand for: the mean of p(x|z) under the model's likelihood."""
        return mean_image(logits, self.likelihood)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.image(self.decoder(z))

    def terms(self, logits: torch.Tensor, kl: torch.Tensor, x: torch.Tensor, epoch: int | None = None) -> Losses:
        """The loss terms per image, from one forward pass: recon under the model's likelihood + weighted KL.
        In float32 whatever precision the forward pass ran in (bf16's 8 bits would round the sums)."""
        recon = recon_loss(logits.float(), x, self.likelihood)
        return Losses(recon + self.kl_weight(epoch) * kl, recon, kl)

    def loss(self, x: torch.Tensor, epoch: int | None = None) -> Losses:
        """The loss terms summed over the batch, for the trainer."""
        out = self(x)
        return Losses(*(t.sum() for t in self.terms(out.logits, out.kl, x, epoch)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded images, from the same latent draw as the loss (one sample of q(z|x) for a VAE)."""
        return self.image(self(x).logits)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Decode n draws from the model's prior (see `prior_sample`)."""
        return self.decode(self.prior_sample(n, generator))


class AE(Autoencoder):
    """The plain autoencoder: a deterministic code, squared error, no prior of its own. It is sampled
    from a density fitted to its training codes after training (`fit_prior`), which the model file
    keeps: a mixture of full-covariance Gaussians, of one component for `diagonal` and `full`."""

    PRIOR_NAMES = {"diagonal": "diagonal Gaussian", "full": "full-covariance Gaussian", "gmm": "Gaussian mixture"}

    def __init__(self, hidden_dims: list[int], z_dim: int, arch: str = "mlp", channels: list[int] = (32, 64),
                 prior: str = "diagonal", gmm_components: int = 10):
        super().__init__(hidden_dims, z_dim, arch, channels)
        self.args |= {"prior": prior, "gmm_components": gmm_components}
        self.prior, self.gmm_components = prior, gmm_components
        self.prior_name = f"z ~ {self.PRIOR_NAMES[prior]} fitted to training codes"
        layers, width = encoder(arch, hidden_dims, channels)
        self.encoder = nn.Sequential(*layers, nn.Linear(width, z_dim))
        k = gmm_components if prior == "gmm" else 1
        self.register_buffer("prior_weights", torch.full((k,), 1 / k))
        self.register_buffer("prior_means", torch.zeros(k, z_dim))
        self.register_buffer("prior_chol", torch.eye(z_dim).expand(k, z_dim, z_dim).clone())  # covariance = L L^T

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """Fit the sampling density to the codes of x, the training images: the article's Gaussian per
        latent dim (diagonal), one full-covariance Gaussian (full), or a mixture fitted by EM (gmm: Ghosh
        et al. 2020's ex-post density estimation); `generator` seeds the mixture's start."""
        self.eval()
        codes = torch.cat([self.code(xb) for xb in x.split(5000)]).double()
        if self.prior == "gmm":
            weights, means, covs = gaussian_mixture(codes, self.gmm_components, generator)
        else:
            weights, means, covs = codes.new_ones(1), codes.mean(0, keepdim=True), torch.cov(codes.T)[None]
            if self.prior == "diagonal":
                covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
        with one_thread():
            chol = torch.linalg.cholesky(covs)
        self.prior_weights, self.prior_means, self.prior_chol = weights.float(), means.float(), chol.float()

    def prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        which = torch.multinomial(self.prior_weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.z_dim, 1, generator=generator, device=generator.device)
        return self.prior_means[which] + (self.prior_chol[which] @ eps).squeeze(-1)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> Output:
        code = self.code(x)
        return Output(self.decoder(code), x.new_zeros(len(x)), code)



class VAE(Autoencoder):
    """The variational autoencoder: q(z|x) = N(mu, diag(exp(logvar))), a N(0, I) prior, loss = recon + beta KL.

    `kl_warmup_epochs` > 0 ramps the KL weight linearly from 0 up to beta over that many epochs
    (Bowman et al. 2016). `iw_samples` = k > 1 trains on the importance-weighted bound of k samples
    (IWAE, Burda et al. 2015) in place of the ELBO; k = 1 is the ELBO, the same code path as ever.
    """

    density = True
    code_name = "posterior means"
    prior_name = "z ~ N(0, I)"

    def __init__(self, hidden_dims: list[int], z_dim: int, beta: float = 1.0, likelihood: str = "gaussian",
                 arch: str = "mlp", channels: list[int] = (32, 64), kl_warmup_epochs: int = 0, iw_samples: int = 1):
        super().__init__(hidden_dims, z_dim, arch, channels)
        self.args |= {"beta": beta, "likelihood": likelihood, "kl_warmup_epochs": kl_warmup_epochs,
                      "iw_samples": iw_samples}
        self.beta, self.likelihood = beta, likelihood
        self.kl_warmup_epochs, self.iw_samples = kl_warmup_epochs, iw_samples
        layers, width = encoder(arch, hidden_dims, channels)
        self.encoder = nn.Sequential(*layers)
        # The mean and log-variance heads, as one layer: one matmul instead of two, same maths.
        self.head = nn.Linear(width, 2 * z_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 even under bf16 autocast: the sampling, the KL and the importance weights need its range.
        return self.head(self.encoder(x)).float().chunk(2, dim=-1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)[0]

    def forward(self, x: torch.Tensor) -> Output:
        mu, logvar = self.encode(x)
        return Output(self.decoder(self.reparameterize(mu, logvar)), kl_divergence(mu, logvar), mu)

    def prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=generator, device=generator.device)

    def kl_weight(self, epoch: int | None = None) -> float:
        return kl_weight(self.beta, self.kl_warmup_epochs, epoch)

    def loss(self, x: torch.Tensor, epoch: int | None = None) -> Losses:
        if self.iw_samples == 1:
            return super().loss(x, epoch)
        mu, logvar = self.encode(x)
        log_w, nll = self.log_weights(x, self.iw_samples, self.kl_weight(epoch), (mu, logvar))
        bound = torch.logsumexp(log_w, 0) - math.log(self.iw_samples)
        # The objective in the units of the k = 1 loss (for the gaussian: squared error, not a density);
        # recon (of the first sample) and the KL are the ELBO's terms, comparable across k.
        offset = GAUSSIAN_NLL_CONSTANT if self.likelihood == "gaussian" else 0.0
        return Losses(-(bound + offset).sum(), (nll[0] - offset).sum(), kl_divergence(mu, logvar).sum())

    def log_weights(self, x: torch.Tensor, k: int, kl_weight: float = 1.0, q=None) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x|z) + kl_weight (log p(z) - log q(z|x)) for k draws z ~ q(z|x) per image, shape (k, N),
        and -log p(x|z) of each. At weight 1, the importance weights whose log-mean-exp bounds log p(x)
        from below, tighter as k grows (Burda et al. 2015). `q`: (mu, logvar) of q(z|x), if at hand."""
        mu, logvar = q if q is not None else self.encode(x)
        eps = torch.randn(k, *mu.shape, device=x.device)
        z = mu + eps * (0.5 * logvar).exp()
        logits = self.decoder(z.flatten(0, 1)).unflatten(0, (k, len(x))).float()
        nll = recon_nll(logits, x.expand(k, *x.shape), self.likelihood)
        log_p_z = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_q_z = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
        return -nll + kl_weight * (log_p_z - log_q_z), nll


def gaussian_mixture(x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 200, tol: float = 1e-6
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights (k,), means (k, d) and covariances (k, d, d) of a Gaussian mixture fitted to x (n, d) by
    EM, from k distinct points of x as the means, x's covariance for each and equal weights; until the
    mean log-likelihood gains less than `tol`. In torch, not scikit-learn: on the pinned kernels (the
    same bytes at any thread count) and on the device the codes are on. A small ridge keeps each
    covariance positive definite."""
    n, d = x.shape
    means = x[torch.randperm(n, generator=generator, device=generator.device)[:k].to(x.device)]
    ridge = 1e-6 * torch.eye(d, dtype=x.dtype, device=x.device)
    covs = (torch.cov(x.T) + ridge).expand(k, d, d).clone()
    log_weights = x.new_full((k,), -math.log(k))
    last = -math.inf
    for _ in range(iterations):
        with one_thread():  # LAPACK's factorisations split their work by thread count
            chol = torch.linalg.cholesky(covs)
        diff = (x[None] - means[:, None]).transpose(1, 2)  # (k, d, n)
        maha = torch.linalg.solve_triangular(chol, diff, upper=False).pow(2).sum(1)  # (k, n)
        log_det = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        joint = log_weights[:, None] - 0.5 * (maha + log_det[:, None] + d * LOG_2PI)
        log_px = torch.logsumexp(joint, 0)
        resp = (joint - log_px).exp()  # (k, n): each point's share in each component
        mass = resp.sum(1)
        log_weights = (mass / n).log()
        means = resp @ x / mass[:, None]
        centred = x[None] - means[:, None]  # (k, n, d)
        covs = (resp[:, :, None] * centred).transpose(1, 2) @ centred / mass[:, None, None] + ridge
        ll = log_px.mean().item()
        if ll - last < tol:
            break
        last = ll
    return log_weights.exp(), means, covs


KINDS = {"ae": AE, "vae": VAE}


def build(kind: str, p) -> Autoencoder:
    """The autoencoder `kind` as params.yaml (a config.Params) describes it."""
    m = p.model
    shape = {"arch": m.arch, "channels": m.channels}
    if kind == "ae":
        return AE(m.hidden_dims, m.z_dim, **shape, prior=p.ae.prior, gmm_components=p.ae.gmm_components)
    if kind == "vae":
        v = p.vae
        return VAE(m.hidden_dims, m.z_dim, v.beta, v.likelihood, kl_warmup_epochs=v.kl_warmup_epochs,
                   iw_samples=v.iw_samples, **shape)
    raise UserError(f"unknown model '{kind}'; accepted: {', '.join(KINDS)}")


def save(model: Autoencoder, path: str | Path) -> None:
    checkpoint.save(model, next(k for k, cls in KINDS.items() if type(model) is cls), path)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Autoencoder:
    return checkpoint.load(path, KINDS, device)
