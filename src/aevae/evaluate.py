"""Test-set metrics for a trained autoencoder: likelihoods, latent-space use, and sample quality as numbers.

Everything here goes through the Autoencoder interface (aevae.model), whatever the model; what
applies to a model that defines p(x) only (KL, ELBO, importance-sampled NLL) asks `model.density`.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from aevae import frechet
from aevae.classifier import Classifier, classify
from aevae.likelihoods import LOG_2PI, log_likelihoods, recon_loss, recon_nll
from aevae.model import Autoencoder


class Reconstruction(NamedTuple):
    metrics: dict[str, float]
    codes: torch.Tensor  # of each image
    images: torch.Tensor  # the reconstructions


@torch.no_grad()
def reconstruction_metrics(model: Autoencoder, x: torch.Tensor, batch_size: int = 2000) -> Reconstruction:
    """One forward pass over x: per-image means of the squared error and cross-entropy of the
    reconstruction (both summed over pixels, whatever the model was trained with), the model's own
    training loss and reconstruction term (`recon`: one of the two, as its likelihood says), and for
    a model with a density the KL term and the negative ELBO under its likelihood (named with it:
    never compare across likelihoods); with the codes and reconstructions, for the metrics that use them.

    A VAE reconstructs from one sampled z per image, so these are one-sample estimates.
    """
    model.eval()
    sums, codes, images = 0, [], []
    for xb in x.split(batch_size):
        logits, kl, code = model(xb)
        loss, recon, _ = model.per_image_losses(logits, kl, xb)
        nelbo = recon_nll(logits, xb, model.likelihood) + kl
        image = model.image(logits)
        mse = (image - xb).pow(2).sum(-1)
        terms = [mse, recon_loss(logits, xb, "bernoulli"), loss, recon, kl, nelbo]
        sums = sums + torch.stack([t.sum() for t in terms])
        codes.append(code)
        images.append(image)
    mse, bce, loss, recon, kl, nelbo = (sums / len(x)).tolist()
    out = {"mse": mse, "bce": bce, "loss": loss, "recon": recon}
    if model.density:
        out |= {"kl": kl, f"nelbo_{model.likelihood}": nelbo}
    return Reconstruction(out, torch.cat(codes), torch.cat(images))


@torch.no_grad()
def importance_nll(model: Autoencoder, x: torch.Tensor, k: int, batch_size: int = 50, chunk: int = 100) -> torch.Tensor:
    """-log p(x) of each image, estimated with k importance samples from q(z|x) (Burda et al. 2015):
    log p(x) ~ log mean_k p(x|z_k) p(z_k) / q(z_k|x). An upper bound on the NLL (in expectation) that
    tightens as k grows; k = 1 is the negative ELBO."""
    model.eval()
    nll = []
    for xb in tqdm(x.split(batch_size), desc=f"IS-NLL, k={k}", unit="batch", leave=False):
        # At most chunk x batch_size decoded images at once: bounded memory, and activations that stay
        # nearer the cache.
        log_w = torch.cat([model.log_weights(xb, min(chunk, k - i))[0] for i in range(0, k, chunk)])
        nll.append(math.log(k) - torch.logsumexp(log_w, 0))
    return torch.cat(nll)


@torch.no_grad()
def quadrature_nll(model: Autoencoder, x: torch.Tensor, half_width: float, step: float, chunk: int = 4096
                   ) -> torch.Tensor:
    """-log p(x) of each image by quadrature over the square [-half_width, half_width]^2 of a 2-D latent
    space: p(x) = sum over the grid's cells of p(x|z) p(z) step^2, z at each cell's centre. Exact as
    the step goes to 0 (and the prior's mass outside the square is below 1e-8 from 6 on). The decoder
    runs once per grid point, whatever the number of images."""
    model.eval()
    ticks = torch.arange(-half_width + step / 2, half_width, step, device=x.device)
    z = torch.cartesian_prod(ticks, ticks)
    log_cell = -0.5 * (z.pow(2) + LOG_2PI).sum(1) + 2 * math.log(step)  # log p(z) step^2
    log_px = torch.full((len(x),), -math.inf, device=x.device)
    for zc, lc in zip(z.split(chunk), log_cell.split(chunk)):
        joint = log_likelihoods(model.decoder(zc), x, model.likelihood) + lc
        log_px = torch.logaddexp(log_px, torch.logsumexp(joint, 1))
    return -log_px


def quadrature_metrics(model: Autoencoder, x: torch.Tensor, nll_is: torch.Tensor, cfg) -> dict[str, float]:
    """The exact NLL of a 2-D latent model by quadrature, how much halving the grid's step moves it
    (convergence), and how far above it the importance-sampled estimate `nll_is` lies, per image."""
    nll = quadrature_nll(model, x, cfg.quadrature_range, cfg.quadrature_step)
    finer = quadrature_nll(model, x, cfg.quadrature_range, cfg.quadrature_step / 2)
    gap = nll_is - nll
    return {
        f"nll_quadrature_{model.likelihood}": nll.mean().item(),
        "quadrature_range": cfg.quadrature_range,
        "quadrature_step": cfg.quadrature_step,
        "quadrature_change_at_half_step": (finer - nll).mean().item(),
        "is_gap_mean": gap.mean().item(),
        "is_gap_over_10_nats": int((gap > 10).sum()),
    }


def active_units(codes: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dims whose code (a VAE: E_q[z_d]) varies across the data: Cov_x > threshold (Burda et al.)."""
    return int((codes.var(0) > threshold).sum())


def linear_probe(train_z, train_y, test_z, test_y, steps: int = 200) -> float:
    """Test accuracy of a multinomial logistic regression fitted on standardised training codes."""
    mean, std = train_z.mean(0), train_z.std(0) + 1e-6
    train_z, test_z = (train_z - mean) / std, (test_z - mean) / std
    # (classes, dims), nn.Linear's layout, which MKL multiplies faster at this narrow shape.
    w = train_z.new_zeros(10, train_z.shape[1], requires_grad=True)
    b = train_z.new_zeros(10, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(F.linear(train_z, w, b), train_y) + 1e-4 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (F.linear(test_z, w, b).argmax(1) == test_y).float().mean().item()


@torch.no_grad()
def codes(model: Autoencoder, x: torch.Tensor, batch_size: int = 5000) -> torch.Tensor:
    """The model's codes (a VAE: posterior means) for images x."""
    model.eval()
    return torch.cat([model.code(xb) for xb in x.split(batch_size)])


def model_metrics(model: Autoencoder, classifier: Classifier, inputs, cfg) -> tuple[dict, float]:
    """Everything evaluate reports for one autoencoder, and the seconds its importance sampling took
    (at the defaults, nearly all of the stage's time). Each thing is computed once: the test
    set's codes and reconstructions come from the pass that measures the reconstructions, and the
    test set's features are the classifier's own (`Classifier.reference`).

    inputs: (train_x, train_y, test_x, test_y) as the model sees them (data.eval_images), on the device
    that model and classifier are on; cfg: the evaluate params.
    """
    train_x, train_y, test_x, test_y = inputs
    gen = torch.Generator(test_x.device).manual_seed(cfg.seed)
    out, test_z, reconstructions = reconstruction_metrics(model, test_x)
    is_seconds = 0.0
    if model.density:
        start = time.perf_counter()
        nll_is = importance_nll(model, test_x, cfg.iw_samples)
        out[f"nll_is_{model.likelihood}"] = nll_is.mean().item()
        is_seconds = time.perf_counter() - start
        out["iw_samples"] = cfg.iw_samples
        if model.config.z_dim == 2:  # small enough to integrate over
            out |= quadrature_metrics(model, test_x, nll_is, cfg)
    out["active_units"] = active_units(test_z)
    out["probe_accuracy"] = linear_probe(codes(model, train_x), train_y, test_z, test_y)
    with torch.no_grad():
        samples = model.sample(cfg.samples, gen)
    feats, probs = classify(classifier, samples)
    out["frechet_samples"] = frechet.distance(frechet.gaussian(feats), classifier.reference)
    out["confident_samples"] = (probs.max(1).values > 0.9).float().mean().item()
    feats, probs = classify(classifier, reconstructions)
    out["frechet_reconstructions"] = frechet.distance(frechet.gaussian(feats), classifier.reference)
    out["classifier_accuracy_reconstructions"] = (probs.argmax(1) == test_y).float().mean().item()
    return out, is_seconds
