"""The autoencoders: one interface, which evaluation, rendering, the bench and the tests use without
knowing which model they hold, and KINDS, the registry that `build` and `load` find a model's class in.

Each model is built from one frozen object, its `Config`: the few values that make its networks and
its objective, filled in from params.yaml by `from_params` and recorded in its model file
(aevae.modelfile). A new model is a subclass of Autoencoder with its `Config` and `from_params`, and an
entry in KINDS (docs/architecture.md walks through one).
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
from torch import nn

from aevae import UserError, modelfile
from aevae.config import Params
from aevae.likelihoods import GAUSSIAN_NLL_CONSTANT, IMAGE_DIM, IMAGE_SIDE, LOG_2PI, mean_image, recon_loss, recon_nll
from aevae.runtime import one_thread


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


@dataclass(frozen=True)
class Network:
    """What makes the encoder and the decoder every autoencoder shares: params.yaml's `model` section,
    less what its arch does not read. `widths` are the mlp's hidden layers or the conv's channels."""

    arch: str  # mlp | conv
    widths: tuple[int, ...]
    z_dim: int

    def __post_init__(self):  # A model file holds lists; the Config holds tuples, as the params do.
        object.__setattr__(self, "widths", tuple(self.widths))

    @staticmethod
    def args(model: dict) -> dict:
        """The Network fields of params.yaml's `model` section (as a dict), which a format-1 file held whole."""
        arch = model["arch"]
        widths = model["hidden_dims"] if arch == "mlp" else model["channels"]
        return {"arch": arch, "widths": widths, "z_dim": model["z_dim"]}


def encoder(config: Network) -> tuple[list[nn.Module], int]:
    """The encoder's layers, from flat images to its last hidden features (after a ReLU), and their
    width. mlp: a linear layer per width; conv: a 4x4, stride-2 convolution per width (its channels)."""
    layers = []
    if config.arch == "mlp":
        width = IMAGE_DIM
        for d in config.widths:
            layers += [nn.Linear(width, d), nn.ReLU()]
            width = d
        return layers, width
    c, side = 1, IMAGE_SIDE
    layers.append(nn.Unflatten(1, (1, side, side)))
    for d in config.widths:
        layers += [nn.Conv2d(c, d, 4, stride=2, padding=1), nn.ReLU()]
        c, side = d, side // 2
    return layers + [nn.Flatten()], c * side * side


def decoder(config: Network) -> nn.Sequential:
    """The encoder mirrored, from z to one logit per pixel."""
    z_dim, channels = config.z_dim, config.widths
    if config.arch == "mlp":
        layers, width = [], z_dim
        for d in reversed(config.widths):
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


def kl_weight(beta: float, warmup_epochs: int, epoch: int | None) -> float:
    """The KL term's weight in training epoch `epoch` (from 1): beta, or under warm-up W (Bowman et al.
    2016) beta e / W in epoch e <= W: a linear ramp that reaches beta in its last epoch, so that a run of
    W epochs ends at the weight evaluate scores. `epoch` None, for a trained model, is beta."""
    if epoch is None or not warmup_epochs:
        return beta
    return beta * min(1.0, epoch / warmup_epochs)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, in closed form."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


class Autoencoder(nn.Module):
    """What every autoencoder offers. A subclass gives `Config`, `from_params`, `code`, `forward`,
    `prior_sample` and the class attributes below; the decoder, the loss, reconstruction and sampling
    are shared.

    `Config` is the frozen dataclass the model is built from (`config`): a Network, and whatever else
    the model's own layers and objective need. A model file records it (`save`), and a class whose
    files once held another record says how to read it (`Config.upgrade`).
    `density` says whether the model defines p(x), so that its KL, ELBO and importance-sampled
    likelihood exist; `code_name` and `prior_name` caption its codes and its samples in figures.
    `epoch`, where a method takes it, is the training epoch (from 1) for an objective that changes
    during training (KL warm-up); None, the default, is the trained model's objective.
    """

    Config = Network
    density = False
    code_name = "codes"
    prior_name = "prior"
    likelihood = "gaussian"

    def __init__(self, config: Network):
        super().__init__()
        self.config = config
        self.decoder = decoder(config)

    @classmethod
    def from_params(cls, p: Params) -> Autoencoder:
        """The model as params.yaml (a config.Params) describes it."""
        raise NotImplementedError

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

    def fit_prior(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """After training, fit what `prior_sample` draws from to the training images x, if the model
        has no prior of its own; what the fit reports of itself, for the training log."""
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
    from a density fitted to its training codes after training (`fit_prior`), which the model file
    keeps: a mixture of full-covariance Gaussians, of one component for `diagonal` and `full`."""

    @dataclass(frozen=True)
    class Config(Network):
        prior: str  # ae.prior: diagonal | full | gmm
        components: int  # of the fitted mixture: ae.gmm_components under gmm, else 1

        @classmethod
        def upgrade(cls, args: dict) -> AE.Config:
            """The Config of a format-1 file, which held params.yaml's `model` and `ae` sections."""
            return cls(**Network.args(args), prior=args["prior"],
                       components=args["gmm_components"] if args["prior"] == "gmm" else 1)

    PRIOR_NAMES = {"diagonal": "diagonal Gaussian", "full": "full-covariance Gaussian", "gmm": "Gaussian mixture"}

    def __init__(self, config: AE.Config):
        super().__init__(config)
        self.prior_name = f"z ~ {self.PRIOR_NAMES[config.prior]} fitted to training codes"
        layers, width = encoder(config)
        z_dim = config.z_dim
        self.encoder = nn.Sequential(*layers, nn.Linear(width, z_dim))
        k = config.components
        self.register_buffer("prior_weights", torch.full((k,), 1 / k))
        self.register_buffer("prior_means", torch.zeros(k, z_dim))
        self.register_buffer("prior_chol", torch.eye(z_dim).expand(k, z_dim, z_dim).clone())  # covariance = L L^T

    @classmethod
    def from_params(cls, p: Params) -> AE:
        # What cannot be fitted is said before training, not after it.
        if p.data.train_size < 2:
            raise UserError(f"data.train_size = {p.data.train_size}: the AE's prior is fitted to its training codes "
                            "and needs at least 2 of them; accepted: data.train_size >= 2")
        if p.ae.prior == "gmm" and p.ae.gmm_components > p.data.train_size:
            raise UserError(f"ae.gmm_components = {p.ae.gmm_components} is more than data.train_size = "
                            f"{p.data.train_size} codes to fit them to; accepted: at most data.train_size")
        components = p.ae.gmm_components if p.ae.prior == "gmm" else 1
        return cls(cls.Config(**Network.args(asdict(p.model)), prior=p.ae.prior, components=components))

    @torch.no_grad()
    def fit_prior(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, float]:
        """Fit the sampling density to the codes of x, the training images: the article's Gaussian per
        latent dim (diagonal), one full-covariance Gaussian (full), or a mixture fitted by EM (gmm: Ghosh
        et al. 2020's ex-post density estimation, which reports its iterations and whether it
        converged); `generator` seeds the mixture's start."""
        self.eval()
        codes = torch.cat([self.code(xb) for xb in x.split(5000)]).double()
        prior, report = self.config.prior, {}
        if prior == "gmm":
            fit = gaussian_mixture(codes, self.config.components, generator)
            weights, means, covs = fit.weights, fit.means, fit.covs
            report = {"em_iterations": fit.iterations, "em_converged": int(fit.converged)}
            if not fit.converged:
                print(f"ae.prior gmm: EM stopped at its cap of {fit.iterations} iterations before converging; "
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
        eps = torch.randn(n, self.config.z_dim, 1, generator=generator, device=generator.device)
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

    @dataclass(frozen=True)
    class Config(Network):
        likelihood: str  # vae.likelihood: gaussian | bernoulli | continuous_bernoulli
        beta: float  # the KL term's weight
        kl_warmup_epochs: int
        iwae_samples: int  # k of the training bound: 1 is the ELBO

        @classmethod
        def upgrade(cls, args: dict) -> VAE.Config:
            """The Config of a format-1 file, which held params.yaml's `model` and `vae` sections."""
            return cls(**Network.args(args), likelihood=args["likelihood"], beta=args["beta"],
                       kl_warmup_epochs=args["kl_warmup_epochs"], iwae_samples=args["iw_samples"])

    density = True
    code_name = "posterior means"
    prior_name = "z ~ N(0, I)"

    def __init__(self, config: VAE.Config):
        super().__init__(config)
        layers, width = encoder(config)
        self.encoder = nn.Sequential(*layers)
        # The mean and log-variance heads, as one layer: one matmul instead of two, same maths.
        self.head = nn.Linear(width, 2 * config.z_dim)

    @classmethod
    def from_params(cls, p: Params) -> VAE:
        v = p.vae
        return cls(cls.Config(**Network.args(asdict(p.model)), likelihood=v.likelihood, beta=v.beta,
                              kl_warmup_epochs=v.kl_warmup_epochs, iwae_samples=v.iwae_samples))

    @property
    def likelihood(self) -> str:
        return self.config.likelihood

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
        return torch.randn(n, self.config.z_dim, generator=generator, device=generator.device)

    def kl_weight(self, epoch: int | None = None) -> float:
        return kl_weight(self.config.beta, self.config.kl_warmup_epochs, epoch)

    def loss(self, x: torch.Tensor, epoch: int | None = None) -> AutoencoderLosses:
        k = self.config.iwae_samples
        if k == 1:
            return super().loss(x, epoch)
        mu, logvar = self.encode(x)
        log_w, nll = self.log_weights(x, k, self.kl_weight(epoch), (mu, logvar))
        bound = torch.logsumexp(log_w, 0) - math.log(k)
        # The objective in the units of the k = 1 loss (for the gaussian: squared error, not a density);
        # recon (of the first sample) and the KL are the ELBO's terms, comparable across k.
        offset = GAUSSIAN_NLL_CONSTANT if self.likelihood == "gaussian" else 0.0
        return AutoencoderLosses(-(bound + offset).sum(), (nll[0] - offset).sum(), kl_divergence(mu, logvar).sum())

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


def save(model: Autoencoder, path: str | Path) -> None:
    """The model file: its kind, its Config's fields (nanoGPT's `model_args`) and its weights."""
    kind = next(k for k, cls in KINDS.items() if type(model) is cls)
    modelfile.save(path, kind, asdict(model.config), model)


def from_file(cls: type[Autoencoder], args: dict, version: int) -> Autoencoder:
    """The untrained model of class `cls` that a model file's args (of format `version`) describe."""
    return cls(cls.Config(**args) if version == modelfile.FORMAT else cls.Config.upgrade(args))


def load(path: str | Path | BinaryIO, device: str | torch.device = "cpu") -> Autoencoder:
    """The autoencoder saved at `path` by `save`, of any kind in KINDS, in eval mode on `device`."""
    return modelfile.load(path, {kind: partial(from_file, cls) for kind, cls in KINDS.items()}, device)
