"""The autoencoders: p(x|z) under each likelihood, the encoder and decoder they share, the AE and the VAE.

Evaluation, rendering, the bench and the tests use a model through the Autoencoder interface, without
knowing which one they hold; KINDS is the registry that `build` and `load` find its class in. A model is
built from its Layers (params.yaml's `model` section, aevae.config) and, if it has one, its own section
of params.yaml, which its model file records as they are. A new model is a subclass of Autoencoder and
an entry in KINDS (docs/architecture.md walks through one).

`likelihood` names p(x|z): gaussian, bernoulli or continuous_bernoulli (vae.likelihood; the AE's is the
gaussian). Each gives the loss that trains a model, the normalised density that ELBOs and NLLs are made
of, and the image a model stands for.
"""

from __future__ import annotations

import math
import sys
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn
from torch.distributions import ContinuousBernoulli

from aevae import MODEL_FORMAT, UserError, read_model, write_model
from aevae.config import RENAMED, AEParams, Layers, Params, VAEParams
from aevae.runtime import one_thread

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


class Output(NamedTuple):
    """A forward pass: decoder logits, the KL term per image (zero where the code is deterministic),
    and the code (`Autoencoder.code`) of each image."""

    logits: torch.Tensor
    kl: torch.Tensor
    code: torch.Tensor


class AutoencoderLosses(NamedTuple):
    """An autoencoder's loss terms, per image or summed over a batch; `loss` is what the optimiser minimises."""

    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor


def encoder(layers: Layers) -> tuple[list[nn.Module], int]:
    """The encoder's modules, from flat images to its last hidden features (after a ReLU), and their
    width. mlp: a linear layer per width; conv: a 4x4, stride-2 convolution per width (its channels)."""
    modules = []
    if layers.arch == "mlp":
        width = IMAGE_DIM
        for d in layers.widths:
            modules += [nn.Linear(width, d), nn.ReLU()]
            width = d
        return modules, width
    c, side = 1, IMAGE_SIDE
    modules.append(nn.Unflatten(1, (1, side, side)))
    for d in layers.widths:
        modules += [nn.Conv2d(c, d, 4, stride=2, padding=1), nn.ReLU()]
        c, side = d, side // 2
    return modules + [nn.Flatten()], c * side * side


def decoder(layers: Layers) -> nn.Sequential:
    """The encoder mirrored, from z to one logit per pixel."""
    z_dim, channels = layers.z_dim, layers.widths
    if layers.arch == "mlp":
        modules, width = [], z_dim
        for d in reversed(layers.widths):
            modules += [nn.Linear(width, d), nn.ReLU()]
            width = d
        return nn.Sequential(*modules, nn.Linear(width, IMAGE_DIM))
    sides = [IMAGE_SIDE]
    for _ in channels:
        sides.append(sides[-1] // 2)
    c, side = channels[-1], sides[-1]
    modules = [nn.Linear(z_dim, c * side * side), nn.ReLU(), nn.Unflatten(1, (c, side, side))]
    outs = [1, *channels[:-1]]
    for i in reversed(range(len(channels))):
        # output_padding brings an odd side back (3 -> 7), which the stride-2 convolution halved down.
        modules.append(nn.ConvTranspose2d(channels[i], outs[i], 4, stride=2, padding=1,
                                          output_padding=sides[i] - 2 * sides[i + 1]))
        if i:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules, nn.Flatten())


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class Autoencoder(nn.Module):
    """What every autoencoder offers. A subclass gives `code`, `forward`, `prior_sample` and the class
    attributes below; the decoder, the loss, reconstruction, sampling and the model file are shared.

    `layers` build the encoder and the decoder. `Settings` is the class of the model's own section of
    params.yaml (`section`, e.g. vae), if it has one: `settings` holds it, and the model file records
    both (`model_args`).
    `density` says whether the model defines p(x), so that its KL, ELBO and importance-sampled
    likelihood exist; `code_name` and `prior_name` caption its codes and its samples in figures.
    `epoch`, where a method takes it, is the training epoch (from 1) for an objective that changes
    during training (KL warm-up); None, the default, is the trained model's objective.
    """

    section: str | None = None
    Settings: type[BaseModel] | None = None
    density = False
    code_name = "codes"
    prior_name = "prior"
    likelihood = "gaussian"

    def __init__(self, layers: Layers, settings: BaseModel | None = None):
        super().__init__()
        self.layers, self.settings = layers, settings
        self.decoder = decoder(layers)

    @classmethod
    def from_params(cls, p: Params) -> Autoencoder:
        """The model as params.yaml (a config.Params) describes it."""
        return cls(p.model.layers(), getattr(p, cls.section) if cls.section else None)

    def model_args(self) -> dict:
        """What its model file records: its layers and its settings, one flat mapping (nanoGPT's `model_args`)."""
        return self.layers.model_dump() | (self.settings.model_dump() if self.settings else {})

    @classmethod
    def from_model_args(cls, args: dict) -> Autoencoder:
        """The untrained model that a model file's args (`model_args`) describe."""
        layers = Layers(**{key: args[key] for key in Layers.model_fields})
        own = {key: value for key, value in args.items() if key not in Layers.model_fields}
        return cls(layers, cls.Settings(**own) if cls.Settings else None)

    @classmethod
    def from_format_1(cls, args: dict) -> Autoencoder:
        """The untrained model of a format-1 file, which held params.yaml's `model` section and the
        model's own merged, as they were then: a key renamed since (config.RENAMED) by its old name."""
        widths = args["hidden_dims"] if args["arch"] == "mlp" else args["channels"]
        layers = Layers(arch=args["arch"], widths=widths, z_dim=args["z_dim"])
        if not cls.Settings:
            return cls(layers)
        old = {new: old.partition(".")[2] for old, (new, _) in RENAMED.items()}
        own = {key: args[old.get(f"{cls.section}.{key}", key)] for key in cls.Settings.model_fields}
        return cls(layers, cls.Settings(**own))

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

    def estimate_prior(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """After training, estimate what `prior_sample` draws from, from the training images x, if the
        model has no prior of its own. Returns what the estimate reports of itself, for the training log."""
        return {}

    def image(self, logits: torch.Tensor) -> torch.Tensor:
        """The image decoder logits stand for: the mean of p(x|z) under the model's likelihood."""
        return mean_image(logits, self.likelihood)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.image(self.decoder(z))

    def per_image_losses(self, logits: torch.Tensor, kl: torch.Tensor, x: torch.Tensor,
                         epoch: int | None = None) -> AutoencoderLosses:
        """The loss terms of each image, from one forward pass: recon under the model's likelihood + weighted
        KL. In float32 whatever precision the forward pass ran in (bf16's 8 bits would round the sums)."""
        recon = recon_loss(logits.float(), x, self.likelihood)
        return AutoencoderLosses(recon + self.kl_weight(epoch) * kl, recon, kl)

    def loss(self, x: torch.Tensor, epoch: int | None = None) -> AutoencoderLosses:
        """The loss terms summed over the batch x, for the trainer."""
        out = self(x)
        return AutoencoderLosses(*(t.sum() for t in self.per_image_losses(out.logits, out.kl, x, epoch)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded images, from the same latent draw as the loss (one sample of q(z|x) for a VAE)."""
        return self.image(self(x).logits)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Decode n draws from the model's prior (see `prior_sample`)."""
        return self.decode(self.prior_sample(n, generator))


class AE(Autoencoder):
    """The plain autoencoder: a deterministic code, squared error, no prior of its own. It is sampled
    from a density fitted to its training codes after training (`estimate_prior`), which the model file
    keeps: a mixture of full-covariance Gaussians, of one component for `diagonal` and `full`."""

    section, Settings = "ae", AEParams
    PRIOR_NAMES = {"diagonal": "diagonal Gaussian", "full": "full-covariance Gaussian", "gmm": "Gaussian mixture"}

    def __init__(self, layers: Layers, settings: AEParams):
        super().__init__(layers, settings)
        self.prior_name = f"z ~ {self.PRIOR_NAMES[settings.prior]} fitted to training codes"
        modules, width = encoder(layers)
        z_dim = layers.z_dim
        self.encoder = nn.Sequential(*modules, nn.Linear(width, z_dim))
        k = self.components = settings.gmm_components if settings.prior == "gmm" else 1
        self.register_buffer("prior_weights", torch.full((k,), 1 / k))
        self.register_buffer("prior_means", torch.zeros(k, z_dim))
        self.register_buffer("prior_chol", torch.eye(z_dim).expand(k, z_dim, z_dim).clone())  # covariance = L L^T

    # The file records the mixture's size as `components`, 1 unless gmm, as it always has.
    def model_args(self) -> dict:
        return self.layers.model_dump() | {"prior": self.settings.prior, "components": self.components}

    @classmethod
    def from_model_args(cls, args: dict) -> AE:
        own = {key: value for key, value in args.items() if key != "components"}
        return super().from_model_args(own | {"gmm_components": args["components"]})

    @torch.no_grad()
    def estimate_prior(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Fit the sampling density to the codes of x, the training images: the article's Gaussian per
        latent dim (diagonal), one full-covariance Gaussian (full), or a mixture fitted by EM (gmm: Ghosh
        et al. 2020's ex-post density estimation, which reports its iterations and whether it
        converged); `generator` seeds the mixture's start."""
        self.eval()
        codes = torch.cat([self.code(xb) for xb in x.split(5000)]).double()
        prior, report = self.settings.prior, {}
        if prior == "gmm":
            mixture = gaussian_mixture(codes, self.components, generator)
            weights, means, covs = mixture.weights, mixture.means, mixture.covs
            report = {"em_iterations": mixture.iterations, "em_converged": int(mixture.converged)}
            if not mixture.converged:
                print(f"ae.prior gmm: EM stopped at its cap of {mixture.iterations} iterations before converging; "
                      "the mixture is the last iterate", file=sys.stderr)
        else:
            weights, means, covs = codes.new_ones(1), codes.mean(0, keepdim=True), torch.cov(codes.T)[None]
            if prior == "diagonal":
                covs = torch.diag_embed(torch.diagonal(covs, dim1=-2, dim2=-1))
            covs = covs + ridge(codes)
        with one_thread():
            chol = torch.linalg.cholesky(covs)
        self.prior_weights, self.prior_means, self.prior_chol = weights.float(), means.float(), chol.float()
        return report

    def prior_sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        which = torch.multinomial(self.prior_weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.layers.z_dim, 1, generator=generator, device=generator.device)
        return self.prior_means[which] + (self.prior_chol[which] @ eps).squeeze(-1)

    def code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> Output:
        code = self.code(x)
        return Output(self.decoder(code), x.new_zeros(len(x)), code)


class VAE(Autoencoder):
    """The variational autoencoder: q(z|x) = N(mu, diag(exp(logvar))), a N(0, I) prior, loss = recon + beta KL.

    `kl_warmup_epochs` > 0 ramps the KL weight linearly from 0 up to beta over that many epochs
    (Bowman et al. 2016). `iwae_samples` = k > 1 trains on the importance-weighted bound of k samples
    (IWAE, Burda et al. 2015) in place of the ELBO; k = 1 is the ELBO, the same code path as ever.
    """

    section, Settings = "vae", VAEParams
    density = True
    code_name = "posterior means"
    prior_name = "z ~ N(0, I)"

    def __init__(self, layers: Layers, settings: VAEParams):
        super().__init__(layers, settings)
        modules, width = encoder(layers)
        self.encoder = nn.Sequential(*modules)
        # The mean and log-variance heads, as one layer: one matmul instead of two, same maths.
        self.head = nn.Linear(width, 2 * layers.z_dim)

    @property
    def likelihood(self) -> str:
        return self.settings.likelihood

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
        return torch.randn(n, self.layers.z_dim, generator=generator, device=generator.device)

    def kl_weight(self, epoch: int | None = None) -> float:
        """beta, or under warm-up W (Bowman et al. 2016) beta e / W in epoch e <= W: a linear ramp that
        reaches beta in its last epoch, so that a run of W epochs ends at the weight evaluate scores."""
        beta, warmup = self.settings.beta, self.settings.kl_warmup_epochs
        return beta if epoch is None or not warmup else beta * min(1.0, epoch / warmup)

    def loss(self, x: torch.Tensor, epoch: int | None = None) -> AutoencoderLosses:
        k = self.settings.iwae_samples
        if k == 1:
            return super().loss(x, epoch)
        mu, logvar = self.encode(x)
        log_w, nll = self.log_weights(x, k, self.kl_weight(epoch), (mu, logvar))
        bound = torch.logsumexp(log_w, 0) - math.log(k)
        # The objective in the units of the k = 1 loss (for the gaussian: squared error, not a density);
        # recon (of the first sample) and the KL are the ELBO's terms, comparable across k.
        offset = GAUSSIAN_NLL_CONSTANT if self.likelihood == "gaussian" else 0.0
        return AutoencoderLosses(-(bound + offset).sum(), (nll[0] - offset).sum(), kl_divergence(mu, logvar).sum())

    def log_weights(self, x: torch.Tensor, k: int, beta: float = 1.0, q=None) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x|z) + beta (log p(z) - log q(z|x)) for k draws z ~ q(z|x) per image, shape (k, N),
        and -log p(x|z) of each. At weight 1, the importance weights whose log-mean-exp bounds log p(x)
        from below, tighter as k grows (Burda et al. 2015). `q`: (mu, logvar) of q(z|x), if at hand."""
        mu, logvar = q if q is not None else self.encode(x)
        eps = torch.randn(k, *mu.shape, device=x.device)
        z = mu + eps * (0.5 * logvar).exp()
        logits = self.decoder(z.flatten(0, 1)).unflatten(0, (k, len(x))).float()
        nll = recon_nll(logits, x.expand(k, *x.shape), self.likelihood)
        log_p_z = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
        log_q_z = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
        return -nll + beta * (log_p_z - log_q_z), nll


class Mixture(NamedTuple):
    weights: torch.Tensor  # (k,)
    means: torch.Tensor  # (k, d)
    covs: torch.Tensor  # (k, d, d)
    iterations: int  # of EM
    converged: bool  # the log-likelihood's gain fell below tol before the cap


# A ridge of this share of the codes' mean variance keeps a covariance positive definite when the
# codes are rank-deficient (fewer codes than dims, or a hidden layer narrower than z), and changes
# nothing else that float32 can see.
RIDGE = 1e-6
# Each mixture component's covariance is at least this share of the codes' own variances: a component
# that settles on a lone code would otherwise shrink onto it, and its samples replay that training code.
COMPONENT_FLOOR = 1e-2


def ridge(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]
    scale = x.var(0).mean().clamp(min=torch.finfo(x.dtype).tiny)  # > 0 even when every code is the same
    return RIDGE * scale * torch.eye(d, dtype=x.dtype, device=x.device)


def gaussian_mixture(x: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 200, tol: float = 1e-6
                     ) -> Mixture:
    """A Gaussian mixture of k components fitted to x (n >= k, d) by EM, from k distinct points of x as
    the means, x's covariance for each and equal weights; until the mean log-likelihood gains less
    than `tol`, or `iterations`. In torch, not scikit-learn: on the pinned kernels (the same bytes at
    any thread count) and on the device the codes are on. Every covariance holds a floor of
    COMPONENT_FLOOR of x's variances."""
    n, d = x.shape
    means = x[torch.randperm(n, generator=generator, device=generator.device)[:k].to(x.device)]
    floor = COMPONENT_FLOOR * torch.diag(x.var(0)) + ridge(x)
    covs = (torch.cov(x.T) + floor).expand(k, d, d).clone()
    log_weights = x.new_full((k,), -math.log(k))
    last, converged = -math.inf, False
    for iteration in range(1, iterations + 1):
        with one_thread():  # LAPACK's factorisations split their work by thread count
            chol = torch.linalg.cholesky(covs)
        diff = (x[None] - means[:, None]).transpose(1, 2)  # (k, d, n)
        maha = torch.linalg.solve_triangular(chol, diff, upper=False).pow(2).sum(1)  # (k, n)
        log_det = 2 * torch.diagonal(chol, dim1=-2, dim2=-1).log().sum(-1)
        joint = log_weights[:, None] - 0.5 * (maha + log_det[:, None] + d * LOG_2PI)
        log_px = torch.logsumexp(joint, 0)
        resp = (joint - log_px).exp()  # (k, n): each point's share in each component
        mass = resp.sum(1).clamp(min=torch.finfo(x.dtype).tiny)  # a component no point wants keeps a finite mean
        log_weights = (mass / n).log()
        means = resp @ x / mass[:, None]
        centred = x[None] - means[:, None]  # (k, n, d)
        covs = (resp[:, :, None] * centred).transpose(1, 2) @ centred / mass[:, None, None] + floor
        ll = log_px.mean().item()
        if ll - last < tol:
            converged = True
            break
        last = ll
    return Mixture(log_weights.exp(), means, covs, iteration, converged)


KINDS = {"ae": AE, "vae": VAE}


def build(kind: str, p: Params) -> Autoencoder:
    """The autoencoder `kind` (a key of KINDS) as params.yaml (a config.Params) describes it."""
    if kind not in KINDS:
        raise UserError(f"unknown model '{kind}'; accepted: {', '.join(KINDS)}")
    return KINDS[kind].from_params(p)


def save(model: Autoencoder, path) -> None:
    """The model file (aevae.write_model): its kind, its `model_args` and its weights."""
    kind = next(k for k, cls in KINDS.items() if type(model) is cls)
    write_model(path, kind, model.model_args(), model)


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Autoencoder:
    """The autoencoder saved at `path` by `save`, of any kind in KINDS, in eval mode on `device`."""
    def from_file(cls, args, version):
        return cls.from_model_args(args) if version == MODEL_FORMAT else cls.from_format_1(args)

    return read_model(path, {kind: partial(from_file, cls) for kind, cls in KINDS.items()}, device)
