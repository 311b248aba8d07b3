"""The scores evaluate gives a trained autoencoder on the test set: likelihoods, latent-space use, and
sample quality as numbers.

Everything here goes through the Autoencoder interface (aevae.model), whatever the model; what
applies to a model that defines p(x) only (KL, ELBO, importance-sampled NLL) asks `model.density`.
"""

from __future__ import annotations

import math
import sys
import time
from typing import NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from aevae.classifier import Classifier, classify, frechet_distance, gaussian
from aevae.model import LOG_2PI, Autoencoder, image_cross_entropy, log_likelihoods, recon_nll


class Reconstruction(NamedTuple):
    metrics: dict[str, float]
    codes: torch.Tensor  # of each image
    images: torch.Tensor  # the reconstructions


@torch.no_grad()
def reconstruction_metrics(model: Autoencoder, x: torch.Tensor, batch_size: int = 2000) -> Reconstruction:
    """Per-image means over x, from one forward pass, with the codes and reconstructions it gave.

    `mse` and `bce` score the reconstruction (the likelihood's mean) whatever the model was trained
    with, summed over pixels. `loss` and `recon` are the model's own training terms. A model with a
    density adds its KL term and its negative ELBO, named with its likelihood: never compare them across
    likelihoods. A VAE reconstructs from one sampled z per image, so these are one-sample estimates.
    """
    model.eval()
    sums, codes, images = 0, [], []
    for xb in x.split(batch_size):
        logits, kl, code = model(xb)
        loss, recon, _ = model.per_image_losses(logits, kl, xb)
        nelbo = recon_nll(logits, xb, model.likelihood) + kl
        image = model.image(logits)
        mse = (image - xb).pow(2).sum(-1)
        terms = [mse, image_cross_entropy(logits, xb, model.likelihood), loss, recon, kl, nelbo]
        sums = sums + torch.stack([t.sum() for t in terms])
        codes.append(code)
        images.append(image)
    mse, bce, loss, recon, kl, nelbo = (sums / len(x)).tolist()
    out = {"mse": mse, "bce": bce, "loss": loss, "recon": recon}
    if model.density:
        out |= {"kl": kl, f"nelbo_{model.likelihood}": nelbo}
    return Reconstruction(out, torch.cat(codes), torch.cat(images))


class Estimate(NamedTuple):
    nll: torch.Tensor  # of each image
    sd: torch.Tensor  # its standard deviation as an estimator, from the spread of the importance weights


@torch.no_grad()
def importance_nll(model: Autoencoder, x: torch.Tensor, k: int, batch_size: int = 50, chunk: int = 100) -> Estimate:
    """-log p(x) of each image, estimated with k importance samples from q(z|x) (Burda et al. 2015):
    log p(x) ~ log mean_k p(x|z_k) p(z_k) / q(z_k|x). An upper bound on the NLL (in expectation) that
    tightens as k grows; k = 1 is the negative ELBO. Its sd, by the delta method, is
    sd(w) / (sqrt(k) mean(w)): honest while no single weight dominates."""
    model.eval()
    nll, sd = [], []
    for xb in tqdm(x.split(batch_size), desc=f"IS-NLL, k={k}", unit="batch", leave=False):
        # At most chunk x batch_size decoded images at once: bounded memory, and activations that stay
        # nearer the cache.
        log_w = torch.cat([model.log_weights(xb, min(chunk, k - i))[0] for i in range(0, k, chunk)])
        log_mean = torch.logsumexp(log_w, 0) - math.log(k)
        log_square = torch.logsumexp(2 * log_w, 0) - math.log(k)  # of the mean of w^2
        nll.append(-log_mean)
        sd.append(((log_square - 2 * log_mean).exp() - 1).clamp(min=0).div(k).sqrt())
    return Estimate(torch.cat(nll), torch.cat(sd))


class Quadrature(NamedTuple):
    nll: torch.Tensor  # -log p(x) of each image
    edge: torch.Tensor  # the log-integrand's largest value on the region's edge, less its peak, per image


# A coarse scan keeps, per image, the cells within this many nats of its peak: e^-30 of it, times every
# cell that could lie outside, is far below a float's resolution of log p(x).
KEEP = 30.0


@torch.no_grad()
def quadrature_nll(model: Autoencoder, x: torch.Tensor, half_width: float, step: float, sds: float,
                   far: tuple[torch.Tensor, torch.Tensor] | None = None, tile: int = 32) -> Quadrature:
    """-log p(x) of each image by quadrature over a 2-D latent space: p(x) = sum over cells of
    p(x|z) p(z) step^2, z at each cell's centre, exact as the step goes to 0 if the region holds the
    integrand's mass. p(x|z) p(z) lives where p(z|x) does, which can be far from the origin, where
    p(z) is tiny but p(x|z) huge, and far from q(z|x) too, which is only fitted to it. So an image's
    region joins three parts: the prior's square [-half_width, half_width]^2; a box of `sds`
    posterior sds (at most half_width) each side of q's mean; and `far`, the box where a scan found the
    integrand within KEEP nats of its peak (`far_mass`; by default with 4 times the step). The cells are
    one lattice's, so the parts join without overlap or gap.
    `edge` tells how much mass the region may still leave out: far below 0 (say -20) when the
    integrand has died away at its edge.

    Each image is summed over its own region only, `tile` x `tile` cells at a time: a tile's cells are
    decoded once, for every image whose region meets it, so the work grows with the sum of the
    regions' sizes, not with the number of images times their union."""
    model.eval()
    side = math.ceil(2 * half_width / step - 1e-9)  # the square: cells 0 .. side - 1 on each axis
    mu, reach = posterior_reach(model, x, half_width, sds)
    far = far if far is not None else far_mass(model, x, half_width, sds, 4 * step)
    index = lambda z: (z + half_width) / step - 0.5  # lattice coordinates: cell i's centre at i
    boxes = [(index(mu - reach).ceil(), index(mu + reach).floor()), (index(far[0]).floor(), index(far[1]).ceil())]
    at = index(mu).round()
    lo = torch.stack([torch.minimum(b[0], at) for b in boxes], 1).long()  # (N, parts, 2), each holding mu's cell
    hi = torch.stack([torch.maximum(b[1], at) for b in boxes], 1).long()

    log_px = torch.full((len(x),), -math.inf, device=x.device)
    peak, edge = log_px.clone(), log_px.clone()
    for rows, cols, images in tqdm(tiles(lo, hi, side, tile), desc=f"quadrature, step {step:g}", unit="tile",
                                   leave=False):
        z = (torch.cartesian_prod(rows, cols) + 0.5) * step - half_width
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        if r0 > 0 and c0 > 0 and r1 < side - 1 and c1 < side - 1:  # inside the square, edges and all
            joint = log_joints(model, z, x[images], step)
        else:
            # Each image's region on the tile and a cell around it: a cell is on the edge where a neighbour is out.
            around = regions(lo[images], hi[images], side, r0 - 1, r1 + 1, c0 - 1, c1 + 1)
            region = around[:, 1:-1, 1:-1].flatten(1)
            whole = (around[:, 2:, 1:-1] & around[:, :-2, 1:-1] & around[:, 1:-1, 2:] & around[:, 1:-1, :-2]).flatten(1)
            used = region.any(0)  # the cells some image needs: the rest are not decoded
            region, whole = region[:, used], whole[:, used]
            joint = log_joints(model, z[used], x[images], step).masked_fill(~region, -math.inf)
            edge[images] = torch.maximum(edge[images], joint.masked_fill(~(region & ~whole), -math.inf).max(1).values)
        log_px[images] = torch.logaddexp(log_px[images], torch.logsumexp(joint, 1))
        peak[images] = torch.maximum(peak[images], joint.max(1).values)
    return Quadrature(-log_px, edge - peak)


def regions(lo: torch.Tensor, hi: torch.Tensor, side: int | None, r0: int, r1: int, c0: int, c1: int
            ) -> torch.Tensor:
    """Which cells of rows r0..r1 and columns c0..c1 lie in each image's region: its boxes [lo, hi]
    ((n, parts, 2) cell indices, inclusive) and, if `side` is given, the square 0 .. side - 1; (n, rows, cols)."""
    rows = torch.arange(r0, r1 + 1, device=lo.device)
    cols = torch.arange(c0, c1 + 1, device=lo.device)
    in_rows = (rows >= lo[..., :1]) & (rows <= hi[..., :1])  # (n, parts, rows)
    in_cols = (cols >= lo[..., 1:]) & (cols <= hi[..., 1:])
    out = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)
    if side is not None:
        out |= ((rows >= 0) & (rows < side))[:, None] & ((cols >= 0) & (cols < side))[None, :]
    return out


def tiles(lo: torch.Tensor, hi: torch.Tensor, side: int | None, size: int):
    """The lattice's cells `size` x `size` at a time, over the boxes [lo, hi] ((N, parts, 2) cell indices,
    inclusive) and the square 0 .. side - 1, every image's, if `side` is given: each tile's rows and
    columns, and the images whose region meets it. Tiles that no image's region meets are skipped."""
    first, last = lo.flatten(0, 1).min(0).values, hi.flatten(0, 1).max(0).values
    if side is not None:
        first, last = first.clamp(max=0), last.clamp(min=side - 1)
    for a in range(first[0].item(), last[0].item() + 1, size):
        for b in range(first[1].item(), last[1].item() + 1, size):
            t0 = torch.tensor([a, b], device=lo.device)
            t1 = torch.minimum(t0 + size - 1, last)
            meets = ((lo <= t1) & (hi >= t0)).all(-1).any(1)
            if side is not None and ((t0 < side) & (t1 >= 0)).all():
                meets[:] = True  # the square is every image's
            images = meets.nonzero()[:, 0]
            if len(images):
                yield (torch.arange(a, t1[0].item() + 1, device=lo.device),
                       torch.arange(b, t1[1].item() + 1, device=lo.device), images)


def log_joints(model: Autoencoder, z: torch.Tensor, x: torch.Tensor, step: float) -> torch.Tensor:
    """log p(x_n|z_g) p(z_g) step^2 for every image and grid point, (N, G)."""
    log_cell = -0.5 * (z.pow(2) + LOG_2PI).sum(1) + 2 * math.log(step)
    return log_likelihoods(model.decoder(z), x, model.likelihood) + log_cell


def posterior_reach(model: Autoencoder, x: torch.Tensor, half_width: float, sds: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """q(z|x)'s means, and `sds` of its sds each side, never wider than the prior's square: a posterior as
    wide as the prior is the prior's to cover."""
    mu, logvar = model.encode(x)
    return mu, (sds * (0.5 * logvar).exp()).clamp(max=half_width)


def far_mass(model: Autoencoder, x: torch.Tensor, half_width: float, sds: float, step: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the box where the integrand holds its mass, scanned with `step` over every image's
    posterior box and half_width beyond (`mass_box`)."""
    mu, reach = posterior_reach(model, x, half_width, sds)
    return mass_box(model, x, mu - reach - half_width, mu + reach + half_width, step)


def mass_box(model: Autoencoder, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, step: float,
             tile: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the box (lower and upper corners in z, a grid point wider each side) around the points
    of a grid of `step` where the log-integrand comes within KEEP nats of its peak. Every image is first
    scanned over the box from the least of `low` to the greatest of `high`, not its own alone: its
    integrand can have a mode far from q(z|x), where another image's posterior lies (on
    bench/quadrature.py's model, a scan of each image's own surroundings missed such a mode holding 22
    nats more than the rest). Where an image's mass reaches the scanned box's edge, its scan grows that
    way by the box's size and runs again, until the mass lies inside. Two passes a scan: the peak, then
    the box. The grid is 4 times coarser than the quadrature's, so this is the smaller part of the work."""
    origin = low.min(0).values
    size = ((high.max(0).values - origin) / step).ceil().long()
    lo = torch.zeros(len(x), 2, dtype=torch.long, device=x.device)  # grid point i at origin + i step
    hi = size.expand(len(x), 2).clone()
    box_lo = torch.full((len(x), 2), math.inf, device=x.device)
    box_hi = torch.full((len(x), 2), -math.inf, device=x.device)
    todo = torch.arange(len(x), device=x.device)
    for _ in range(20):  # the prior's tails end any integrand's mass: in practice a round or two
        near_lo, near_hi = scan(model, x[todo], lo[todo], hi[todo], origin, step, tile)
        box_lo[todo], box_hi[todo] = origin + (near_lo - 1) * step, origin + (near_hi + 1) * step
        short_lo, short_hi = near_lo <= lo[todo], near_hi >= hi[todo]  # (n, 2): the mass reaches that side
        grow = (short_lo | short_hi).any(1)
        if not grow.any():
            break
        todo, short_lo, short_hi = todo[grow], short_lo[grow], short_hi[grow]
        lo[todo] -= torch.where(short_lo, size, 0)
        hi[todo] += torch.where(short_hi, size, 0)
    return box_lo, box_hi


def scan(model: Autoencoder, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, origin: torch.Tensor,
         step: float, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The least and greatest grid indices ((n, 2) each) where each image's log-integrand comes within KEEP
    nats of its peak over its box [lo, hi] of the grid origin + i step."""
    def joints(desc):
        for rows, cols, images in tqdm(tiles(lo[:, None], hi[:, None], None, tile), desc=desc, unit="tile",
                                       leave=False):
            ij = torch.cartesian_prod(rows, cols)
            mine = regions(lo[images, None], hi[images, None], None, int(rows[0]), int(rows[-1]), int(cols[0]),
                           int(cols[-1]))
            joint = log_joints(model, origin + ij * step, x[images], step).masked_fill(~mine.flatten(1), -math.inf)
            yield ij, images, joint

    peak = torch.full((len(x),), -math.inf, device=x.device)
    for _, images, joint in joints("scan for mass: peak"):
        peak[images] = torch.maximum(peak[images], joint.max(1).values)
    most, least = torch.iinfo(lo.dtype).max, torch.iinfo(lo.dtype).min
    near_lo, near_hi = torch.full_like(lo, most), torch.full_like(hi, least)
    for ij, images, joint in joints("scan for mass: box"):
        near = (joint > peak[images, None] - KEEP)[..., None]  # (n, G, 1)
        near_lo[images] = torch.minimum(near_lo[images], torch.where(near, ij, most).amin(1))
        near_hi[images] = torch.maximum(near_hi[images], torch.where(near, ij, least).amax(1))
    return near_lo, near_hi


def quadrature_metrics(model: Autoencoder, x: torch.Tensor, nll_is: Estimate, cfg) -> dict[str, float]:
    """The exact NLL of a 2-D latent model by quadrature, with what could make it wrong: how much
    halving the step moves it, the integrand at the region's edge, and how often the importance-sampled
    estimate, an upper bound, lies below it by more than its own noise."""
    half_width, step, sds = cfg.quadrature_range, cfg.quadrature_step, cfg.quadrature_sds
    far = far_mass(model, x, half_width, sds, 4 * step)  # one scan: the half step sums over the same region
    nll, edge = quadrature_nll(model, x, half_width, step, sds, far)
    finer = quadrature_nll(model, x, half_width, step / 2, sds, far).nll
    gap = nll_is.nll - nll
    below = int((gap < -3 * nll_is.sd).sum())
    out = {
        f"nll_quadrature_{model.likelihood}": nll.mean().item(),
        "quadrature_range": cfg.quadrature_range,
        "quadrature_step": cfg.quadrature_step,
        "quadrature_sds": cfg.quadrature_sds,
        "quadrature_change_at_half_step": (finer - nll).mean().item(),
        "quadrature_edge_to_peak": edge.max().item(),
        "is_gap_mean": gap.mean().item(),
        "is_gap_sd_of_mean": (nll_is.sd.pow(2).sum().sqrt() / len(x)).item(),
        "is_gap_over_10_nats": int((gap > 10).sum()),
        "is_gap_below_noise": below,
    }
    if below or out["quadrature_edge_to_peak"] > EDGE_LIMIT:
        print(f"evaluate: {type(model).__name__}: the quadrature may have missed mass (edge to peak "
              f"{out['quadrature_edge_to_peak']:.1f} nats; {below} images where the IS estimate lies below it by "
              f"over 3 sds); widen evaluate.quadrature_sds or quadrature_range", file=sys.stderr)
    return out


# The integrand's largest value on the region's edge, against its peak, above which mass may be missing.
EDGE_LIMIT = -20.0


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
        nll_is = importance_nll(model, test_x, cfg.nll_samples)
        out[f"nll_is_{model.likelihood}"] = nll_is.nll.mean().item()
        is_seconds = time.perf_counter() - start
        out["nll_samples"] = cfg.nll_samples
        if model.layers.z_dim == 2:  # small enough to integrate over
            out |= quadrature_metrics(model, test_x, nll_is, cfg)
    out["active_units"] = active_units(test_z)
    out["probe_accuracy"] = linear_probe(codes(model, train_x), train_y, test_z, test_y)
    with torch.no_grad():
        samples = model.sample(cfg.samples, gen)
    feats, probs = classify(classifier, samples)
    out["frechet_samples"] = frechet_distance(gaussian(feats), classifier.reference)
    out["confident_samples"] = (probs.max(1).values > 0.9).float().mean().item()
    feats, probs = classify(classifier, reconstructions)
    out["frechet_reconstructions"] = frechet_distance(gaussian(feats), classifier.reference)
    out["classifier_accuracy_reconstructions"] = (probs.argmax(1) == test_y).float().mean().item()
    return out, is_seconds
