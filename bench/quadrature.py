"""The exact NLL at z = 2, by quadrature, side by side: each image over its own region against every image
over the union of all regions (the code before, kept here as `masked_union_nll`).

    python bench/quadrature.py [--train-size 10000] [--epochs 5] [--images 200] [--check 40] [--test-size 10000]
                               [--data data/mnist]

Trains the VAE that `dvc exp run -S model.z_dim=2 -S vae.likelihood=continuous_bernoulli
-S data.train_size=10000 -S train.epochs=5` trains, then times what evaluate@vae's quadrature does
(the scan for far mass, then the NLL at evaluate.quadrature_step and at half of it) on the first
--images test images both ways, and the per-image way alone on all 10,000 (--test-size) test images. Then it checks the
figure on the first --check test images against an independent grid: no encoder, no shared lattice, no
regions, a scan of [-30, 30]^2 at 0.1, then a grid of 0.01 around each image's peak.
"""

from __future__ import annotations

import math
import time

import yaml
from common import parser

from aevae import config, data, model, runtime
from aevae.model import LOG_2PI, recon_nll
from aevae.scores import KEEP, Quadrature, far_mass, log_joints, mass_box, quadrature_nll
from aevae.trainer import fit

NEIGHBOURS = [(1, 0), (-1, 0), (0, 1), (0, -1)]
CONFIG = {"model": {"z_dim": 2}, "vae": {"likelihood": "continuous_bernoulli"}, "data": {"train_size": 10000},
          "train": {"epochs": 5}}


def masked_union_nll(net, x, half_width: float, step: float, sds: float, chunk: int = 2048) -> Quadrature:
    """aevae.scores.quadrature_nll as it was: every image's integrand on the union of all regions' cells,
    each masked to its own, with a scan of its own. The scan is today's (aevae.scores.mass_box, which
    now also grows where an image's mass reaches its edge), so that the two ways sum over the same regions."""
    import torch

    net.eval()
    side = math.ceil(2 * half_width / step - 1e-9)
    mu, logvar = net.encode(x)
    reach = (sds * (0.5 * logvar).exp()).clamp(max=half_width)
    index = lambda z: (z + half_width) / step - 0.5
    boxes = [(index(mu - reach).ceil(), index(mu + reach).floor())]
    found = mass_box(net, x, mu - reach - half_width, mu + reach + half_width, 4 * step)  # the same scan
    boxes.append((index(found[0]).floor(), index(found[1]).ceil()))
    at = index(mu).round()
    lo = torch.stack([torch.minimum(b[0], at) for b in boxes], 1).long()
    hi = torch.stack([torch.maximum(b[1], at) for b in boxes], 1).long()
    first = torch.minimum(lo.flatten(0, 1).min(0).values, torch.zeros(2, dtype=lo.dtype))
    last = torch.maximum(hi.flatten(0, 1).max(0).values, torch.full((2,), side - 1, dtype=hi.dtype))
    taken = torch.zeros(*(last - first + 1).tolist(), dtype=torch.bool)
    taken[-first[0]:side - first[0], -first[1]:side - first[1]] = True
    for (a0, a1), (b0, b1) in zip((lo.flatten(0, 1) - first).tolist(), (hi.flatten(0, 1) - first + 1).tolist()):
        taken[a0:b0, a1:b1] = True
    cells = taken.nonzero() + first

    def inside(ij):
        square = ((ij >= 0) & (ij < side)).all(-1)
        box = ((ij[None, None] >= lo[:, :, None]) & (ij[None, None] <= hi[:, :, None])).all(-1).any(1)
        return square[None] | box

    log_px = torch.full((len(x),), -math.inf)
    peak, edge = log_px.clone(), log_px.clone()
    for ij in cells.split(chunk):
        z = (ij + 0.5) * step - half_width
        region = inside(ij)
        on_edge = region & ~torch.stack([inside(ij + torch.tensor(d)) for d in NEIGHBOURS]).all(0)
        joint = log_joints(net, z, x, step).masked_fill(~region, -math.inf)
        log_px = torch.logaddexp(log_px, torch.logsumexp(joint, 1))
        peak = torch.maximum(peak, joint.max(1).values)
        edge = torch.maximum(edge, joint.masked_fill(~on_edge, -math.inf).max(1).values)
    return Quadrature(-log_px, edge - peak)


def independent_nll(net, x, extent: float = 30.0, coarse: float = 0.1, fine: float = 0.01):
    """-log p(x) of each image with no encoder, no shared lattice and no regions: the likelihood and the
    prior written out, on a coarse grid over [-extent, extent]^2, then a fine one over the box where the
    coarse one came within KEEP nats of the image's peak."""
    import torch

    def log_joint(z, images):  # (G, N): every point against every image
        out = []
        for zc in z.split(1024):
            logits = net.decoder(zc)
            prior = -0.5 * (zc.pow(2) + LOG_2PI).sum(1, keepdim=True)
            out.append(torch.stack([-recon_nll(logits, image.expand_as(logits), net.likelihood) for image in images],
                                   1) + prior)
        return torch.cat(out)

    ticks = torch.arange(-extent, extent, coarse) + coarse / 2
    grid = torch.cartesian_prod(ticks, ticks)
    scan = log_joint(grid, x)
    out = []
    for n, image in enumerate(x):
        near = grid[scan[:, n] > scan[:, n].max() - KEEP]
        lo, hi = near.min(0).values - coarse, near.max(0).values + coarse
        cells = torch.cartesian_prod(torch.arange(lo[0], hi[0], fine), torch.arange(lo[1], hi[1], fine)) + fine / 2
        out.append(-(torch.logsumexp(log_joint(cells, image[None])[:, 0], 0) + 2 * math.log(fine)))
    return torch.stack(out)


def per_image(net, x, cfg):
    """What evaluate@vae does now (aevae.scores.quadrature_metrics): one scan, then the NLL at the step and
    at half of it, each image over its own region."""
    far = far_mass(net, x, cfg.quadrature_range, cfg.quadrature_sds, 4 * cfg.quadrature_step)
    nll = quadrature_nll(net, x, cfg.quadrature_range, cfg.quadrature_step, cfg.quadrature_sds, far).nll
    quadrature_nll(net, x, cfg.quadrature_range, cfg.quadrature_step / 2, cfg.quadrature_sds, far)
    return nll


def union(net, x, cfg):
    """What it did before: the NLL at the step and at half of it, each with its scan, over the union."""
    nll = masked_union_nll(net, x, cfg.quadrature_range, cfg.quadrature_step, cfg.quadrature_sds).nll
    masked_union_nll(net, x, cfg.quadrature_range, cfg.quadrature_step / 2, cfg.quadrature_sds)
    return nll


def timed(way, net, x, cfg) -> tuple[float, float]:
    """Seconds, and the mean NLL at the configured step."""
    start = time.perf_counter()
    mean = way(net, x, cfg).mean().item()
    return time.perf_counter() - start, mean


def main():
    ap = parser(__doc__, epochs=5, train_size=10000)
    ap.add_argument("--images", type=int, default=200, help="test images to time both ways on")
    ap.add_argument("--check", type=int, default=40, help="test images to check against an independent grid")
    ap.add_argument("--test-size", type=int, default=10000, help="the test images to time the per-image way on")
    args = ap.parse_args()
    runtime.setup()
    import torch

    raw = yaml.safe_load(open("params.yaml"))
    for section, values in CONFIG.items():
        raw[section] |= values
    raw["data"]["train_size"], raw["train"]["epochs"] = args.train_size, args.epochs
    p = config.parse(raw)
    train_x, _ = data.load(args.data, "train", p.data.train_size)
    test_x, _ = data.load(args.data, "test", args.test_size)
    torch.manual_seed(p.train.seed)
    net = model.build("vae", p)
    fit(net, (train_x,), (test_x,), p.train, torch.device("cpu"))
    with torch.no_grad():
        mu = net.encode(test_x)[0]
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}; a z = 2 continuous-Bernoulli VAE, "
          f"{args.epochs} epochs on {args.train_size} images; its test posteriors' means reach |z| = "
          f"{mu.abs().max():.1f}; the NLL at step {p.evaluate.quadrature_step} and at half of it")
    with torch.no_grad():
        few = test_x[:args.images]
        union_seconds, union_nll = timed(union, net, few, p.evaluate)
        own, own_nll = timed(per_image, net, few, p.evaluate)
        print(f"{args.images} test images: union of the regions {union_seconds:.1f} s, each its own {own:.1f} s "
              f"({union_seconds / own:.1f}x faster); mean NLL {union_nll:.4f} and {own_nll:.4f}")
        every, every_nll = timed(per_image, net, test_x, p.evaluate)
        print(f"{len(test_x)} test images, each its own region: {every:.1f} s; mean NLL {every_nll:.4f}")
        some = test_x[:args.check]
        ours = quadrature_nll(net, some, p.evaluate.quadrature_range, p.evaluate.quadrature_step,
                              p.evaluate.quadrature_sds)
        grid = independent_nll(net, some)
        print(f"{args.check} test images: mean NLL {ours.nll.mean():.4f} by quadrature, {grid.mean():.4f} by the "
              f"independent grid, at most {(ours.nll - grid).abs().max():.4f} apart on an image; the edge "
              f"{-ours.edge.max():.1f} nats below the peak")


if __name__ == "__main__":
    main()
