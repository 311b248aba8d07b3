import copy
import importlib.util
import math
import sys
import time
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from aevae import classifier, scores

from helpers import ROOT, make_model


def test_frechet_distance_of_a_set_to_itself_is_zero_and_sees_a_shift():
    torch.manual_seed(0)
    a = classifier.gaussian(torch.randn(2000, 8) @ torch.randn(8, 8))
    assert classifier.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shift = torch.tensor([3.0] + [0.0] * 7, dtype=torch.float64)
    assert classifier.frechet_distance(a, (a[0] + shift, a[1])) == pytest.approx(9.0, rel=1e-6)


def test_frechet_distance_of_two_known_gaussians():
    # N(0, I) vs N(0, 4I) in d dims: Tr(I + 4I - 2*2I) = d.
    torch.manual_seed(0)
    a, b = torch.randn(200_000, 3), 2 * torch.randn(200_000, 3)
    assert classifier.frechet_distance(classifier.gaussian(a), classifier.gaussian(b)) == pytest.approx(3.0, rel=0.02)


def random_covariance(n: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * n, rank, generator=g, dtype=torch.float64) @ torch.randn(rank, n, generator=g, dtype=torch.float64)
    return torch.cov(x.T)


@pytest.mark.parametrize("n, rank", [(7, 7), (40, 40), (128, 97), (33, 5)])
def test_the_jacobi_eigensolver_agrees_with_lapacks(n, rank):
    """Odd and even sizes, full rank and rank-deficient (a covariance of dead features), against LAPACK's
    eigensolver, an independent route: the same spectrum to float64's resolution, orthonormal vectors."""
    a = random_covariance(n, rank, seed=n)
    vals, vecs = classifier.eigh(a)
    scale = a.diagonal().sum()
    assert torch.allclose(vals.sort().values, torch.linalg.eigvalsh(a), rtol=0, atol=1e-13 * scale)
    assert torch.allclose(vecs @ torch.diag(vals) @ vecs.T, a, rtol=0, atol=1e-13 * scale)
    assert torch.allclose(vecs.T @ vecs, torch.eye(n, dtype=a.dtype), rtol=0, atol=1e-13)
    indefinite = a - a.diagonal().mean() * torch.eye(n, dtype=a.dtype)
    assert torch.allclose(classifier.eigh(indefinite)[0].sort().values, torch.linalg.eigvalsh(indefinite), rtol=0,
                          atol=1e-13 * scale)


def test_frechet_distance_against_its_closed_form_and_lapacks_route():
    """Commuting covariances have the closed form sum (sqrt(a_i) - sqrt(b_i))^2; full ones are checked
    against the same formula through LAPACK's eigensolver (the project's earlier code), and a set with
    dead features (zero rows) against the same set without them."""
    mu_a, mu_b = torch.zeros(6, dtype=torch.float64), torch.arange(6, dtype=torch.float64)
    var_a, var_b = torch.arange(1, 7, dtype=torch.float64), torch.arange(6, 0, -1, dtype=torch.float64) ** 2
    exact = mu_b.pow(2).sum() + (var_a.sqrt() - var_b.sqrt()).pow(2).sum()
    assert classifier.frechet_distance((mu_a, torch.diag(var_a)), (mu_b, torch.diag(var_b))) == pytest.approx(exact.item(), rel=1e-12)

    s_a, s_b = random_covariance(30, 30, seed=1), random_covariance(30, 30, seed=2)
    vals, vecs = torch.linalg.eigh(s_a)
    root_a = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    cross = torch.linalg.eigvalsh(root_a @ s_b @ root_a).clamp(min=0).sqrt().sum()
    zeros, ones = torch.zeros(30, dtype=torch.float64), torch.ones(30, dtype=torch.float64)
    lapack = 30 + s_a.trace() + s_b.trace() - 2 * cross  # ||0 - 1||^2 over 30 dims is 30
    assert classifier.frechet_distance((zeros, s_a), (ones, s_b)) == pytest.approx(lapack.item(), rel=1e-12)

    dead = torch.zeros(34, 34, dtype=torch.float64)
    dead[:30, :30] = s_b
    padded = (torch.zeros(34, dtype=torch.float64), torch.block_diag(s_a, torch.zeros(4, 4, dtype=torch.float64)))
    assert classifier.frechet_distance(padded, (torch.zeros(34, dtype=torch.float64), dead)) == pytest.approx(
        classifier.frechet_distance((zeros, s_a), (zeros, s_b)), rel=1e-12)


def test_frechet_distance_of_nearly_singular_covariances_agrees_with_40_digit_arithmetic():
    """Features as the classifier's are: some never fire (zero rows), others nearly copy each other, so
    that the cross term's matrix has eigenvalues 1e-13 of its largest, whose square roots amplify rounding
    most. The reference is the same formula on the same float64 matrices in mpmath's 40 digits."""
    mpmath = pytest.importorskip("mpmath")  # installed with torch (through sympy)
    mpmath.mp.dps = 40
    g = torch.Generator().manual_seed(0)
    base = torch.randn(5000, 12, generator=g, dtype=torch.float64)
    feats = torch.cat([base, base[:, :4] + 1e-3 * torch.randn(5000, 4, generator=g, dtype=torch.float64),
                       torch.zeros(5000, 3, dtype=torch.float64)], 1)
    a = classifier.gaussian(feats)
    b = classifier.gaussian(feats * torch.linspace(0.5, 2, 19, dtype=torch.float64) + 0.1)

    def root(m):
        vals, vecs = mpmath.eigsy(m)
        return vecs * mpmath.diag([mpmath.sqrt(max(v, 0)) for v in vals]) * vecs.T

    root_a = root(mpmath.matrix(a[1].tolist()))
    cross = sum(mpmath.sqrt(max(v, 0)) for v in mpmath.eigsy(root_a * mpmath.matrix(b[1].tolist()) * root_a)[0])
    exact = (a[0] - b[0]).pow(2).sum().item() + a[1].trace().item() + b[1].trace().item() - 2 * float(cross)
    assert classifier.frechet_distance(a, b) == pytest.approx(exact, rel=1e-9)


@pytest.fixture(params=[1.0, 4.0])
def small_vae(request):
    torch.manual_seed(0)
    vae = make_model("vae", hidden_dims=(32,), z_dim=4, beta=request.param, likelihood="bernoulli")
    return vae, torch.rand(400, 784).bernoulli()


def test_importance_estimate_tightens_as_k_grows_and_starts_at_the_elbo(small_vae):
    vae, x = small_vae
    torch.manual_seed(1)
    nelbo = scores.reconstruction_metrics(vae, x).metrics["nelbo_bernoulli"]
    nll = {k: scores.importance_nll(vae, x, k, chunk=64).nll.mean().item() for k in (1, 10, 200)}
    assert nll[1] == pytest.approx(nelbo, rel=0.01)  # k = 1 is a one-sample negative ELBO, whatever beta
    assert nll[1] > nll[10] > nll[200]


def test_the_likelihood_estimates_do_not_depend_on_beta_the_training_weight():
    """beta weighs the KL in the training loss only: p(x) is the same model's, whatever beta trained it."""
    torch.manual_seed(0)
    vaes = [make_model("vae", hidden_dims=(32,), z_dim=2, beta=beta, likelihood="bernoulli") for beta in (1.0, 4.0)]
    vaes[1].load_state_dict(vaes[0].state_dict())
    x = torch.rand(8, 784).bernoulli()
    nll = []
    for vae in vaes:
        torch.manual_seed(1)
        nll.append((scores.importance_nll(vae, x, 100).nll, scores.quadrature_nll(vae, x, 6.0, 0.25, 10.0).nll))
    assert torch.equal(nll[0][0], nll[1][0]) and torch.equal(nll[0][1], nll[1][1])
    assert (nll[0][0] - nll[0][1]).abs().max() < 1.0  # and each is the NLL: IS agrees with the quadrature


def test_reconstruction_metrics_report_the_models_own_loss(small_vae):
    vae, x = small_vae
    m, codes, images = scores.reconstruction_metrics(vae, x, batch_size=150)
    assert m["recon"] == m["bce"]  # the bernoulli likelihood's term
    assert m["loss"] == pytest.approx(m["recon"] + vae.settings.beta * m["kl"], rel=1e-5)  # the trained objective
    assert m["nelbo_bernoulli"] == pytest.approx(m["bce"] + m["kl"], rel=1e-5)
    # The codes and images of the pass, in the data's order (compared at the pass's batch size: a BLAS may
    # round a product differently by its shape)
    assert torch.equal(codes, scores.codes(vae, x, batch_size=150))
    assert m["mse"] == pytest.approx((images - x).pow(2).sum(1).mean().item(), rel=1e-5)
    ae = scores.reconstruction_metrics(make_model("ae", hidden_dims=(32,), z_dim=4), x).metrics
    assert set(ae) == {"mse", "bce", "loss", "recon"} and ae["loss"] == ae["recon"] == ae["mse"]


def test_active_units_count_only_dims_that_vary():
    z = torch.randn(1000, 5)
    assert scores.active_units(z) == 5
    z[:, :3] = 0.05 * z[:, :3]  # variance 0.0025 < 0.01
    assert scores.active_units(z) == 2


def test_a_vae_with_collapsed_units_has_none_active():
    vae = make_model("vae", hidden_dims=(32,), z_dim=4)
    with torch.no_grad():
        vae.head.weight.zero_()  # every mean is the bias: the codes do not depend on x
    assert scores.active_units(scores.codes(vae, torch.rand(100, 784))) == 0


def test_linear_probe_separates_separable_codes_and_not_noise():
    torch.manual_seed(0)
    y = torch.arange(2000) % 10
    centres = 5 * torch.randn(10, 6)
    z = centres[y] + torch.randn(2000, 6)
    assert scores.linear_probe(z[:1000], y[:1000], z[1000:], y[1000:]) > 0.95
    noise = torch.randn(2000, 6)
    assert scores.linear_probe(noise[:1000], y[:1000], noise[1000:], y[1000:]) < 0.2


def test_classify_gives_features_and_probabilities():
    feats, probs = classifier.classify(classifier.for_scoring(classifier.Classifier()), torch.rand(7, 784))
    assert feats.shape == (7, 128) and probs.shape == (7, 10)
    assert torch.allclose(probs.sum(1), torch.ones(7))


def test_the_classifier_scores_in_eval_mode_and_channels_last_and_keeps_that_through_its_file(tmp_path):
    torch.manual_seed(0)
    net, test_x = classifier.Classifier(), torch.rand(300, 784)
    conv = net.features[4].weight
    assert net.training and not conv.is_contiguous(memory_format=torch.channels_last)  # as it trains
    scorer = classifier.for_scoring(net)
    assert not scorer.training and scorer.features[4].weight.is_contiguous(memory_format=torch.channels_last)
    scorer.reference = classifier.gaussian(classifier.classify(scorer, test_x)[0])
    classifier.save(scorer, tmp_path / "c.pt")
    loaded = classifier.load(tmp_path / "c.pt")
    assert not loaded.training and loaded.features[4].weight.is_contiguous(memory_format=torch.channels_last)
    feats, _ = classifier.classify(loaded, test_x)
    assert classifier.frechet_distance(classifier.gaussian(feats), loaded.reference) == pytest.approx(0, abs=1e-6)
    assert loaded.reference[1].abs().sum() > 0  # a real covariance, not the zeros it is built with


def scored(scorer, images):
    """The Frechet distance of images to the reference, and the share the classifier labels confidently."""
    feats, probs = classifier.classify(scorer, images)
    return classifier.frechet_distance(classifier.gaussian(feats), scorer.reference), (probs.max(1).values > 0.9).float().mean().item()


def test_model_metrics_scores_the_models_samples_and_reconstructions_and_times_the_importance_sampling(monkeypatch):
    torch.manual_seed(0)
    scorer = classifier.for_scoring(classifier.Classifier())
    x, y = torch.rand(200, 784), torch.arange(200) % 10
    scorer.reference = classifier.gaussian(classifier.classify(scorer, x)[0])
    cfg = SimpleNamespace(seed=3, nll_samples=20, samples=100)
    importance_nll = scores.importance_nll

    def slow_importance_nll(*args):
        time.sleep(0.3)
        return importance_nll(*args)

    monkeypatch.setattr(scores, "importance_nll", slow_importance_nll)
    vae = make_model("vae", hidden_dims=(32,), z_dim=4)
    start = time.perf_counter()
    vae_metrics, seconds = scores.model_metrics(vae, scorer, (x, y, x, y), cfg)
    assert 0.3 <= seconds < time.perf_counter() - start  # the importance sampling's time, not the call's
    assert vae_metrics["nll_samples"] == 20 and vae_metrics["nll_is_gaussian"] < vae_metrics["nelbo_gaussian"] + 1
    ae = make_model("ae", hidden_dims=(32,), z_dim=4)
    ae_metrics, seconds = scores.model_metrics(ae, scorer, (x, y, x, y), cfg)
    assert seconds == 0 and "kl" not in ae_metrics and "nll_is_gaussian" not in ae_metrics
    # The samples are the model's, drawn with the evaluate seed; the reconstructions are of the test images.
    samples = ae.sample(cfg.samples, torch.Generator().manual_seed(cfg.seed))
    assert (ae_metrics["frechet_samples"], ae_metrics["confident_samples"]) == scored(scorer, samples)
    assert ae_metrics["frechet_reconstructions"] == scored(scorer, ae.reconstruct(x))[0]
    assert ae_metrics["frechet_samples"] != scored(scorer, ae.sample(cfg.samples, torch.Generator().manual_seed(0)))[0]
    for m in (vae_metrics, ae_metrics):
        assert 0 <= m["active_units"] <= 4


def test_quadrature_is_the_exact_nll_of_a_2d_vae_that_importance_sampling_bounds_from_above():
    torch.manual_seed(0)
    vae = make_model("vae", hidden_dims=(32,), z_dim=2, likelihood="bernoulli")
    x = torch.rand(20, 784).bernoulli()
    exact = scores.quadrature_nll(vae, x, 6.0, 0.05, 10.0).nll
    assert torch.allclose(scores.quadrature_nll(vae, x, 6.0, 0.025, 10.0).nll, exact, atol=1e-3)  # converged
    assert not torch.allclose(scores.quadrature_nll(vae, x, 6.0, 1.0, 10.0).nll, exact, atol=1e-3)  # coarse is off
    torch.manual_seed(1)
    is_nll = scores.importance_nll(vae, x, 2000)
    gap = is_nll.nll - exact
    assert gap.abs().max() < 0.2 and gap.mean() > -0.01  # IS agrees, and bounds it from above on average
    cfg = SimpleNamespace(quadrature_range=6.0, quadrature_step=0.05, quadrature_sds=10.0)
    m = scores.quadrature_metrics(vae, x, is_nll, cfg)
    assert m["nll_quadrature_bernoulli"] == pytest.approx(exact.mean().item())
    assert abs(m["quadrature_change_at_half_step"]) < 1e-3 and m["is_gap_mean"] == pytest.approx(gap.mean().item())
    assert m["quadrature_edge_to_peak"] < scores.EDGE_LIMIT and m["is_gap_below_noise"] == 0


def far_vae(n=8, shift=(12.0, -9.0), centres=((4.0, -3.0),)):
    """A 2-D VAE whose images' posteriors sit near |z| = 18 (around each of `centres`, moved by `shift`),
    with sds near 0.2, as a VAE trained on real data can have them: a sharp decoder, images drawn from
    it, its input moved by `shift` (the same likelihoods, far out), and an encoder fitted to them."""
    torch.manual_seed(0)
    vae = make_model("vae", hidden_dims=(64,), z_dim=2, likelihood="bernoulli")
    vae.decoder.requires_grad_(False)
    with torch.no_grad():
        vae.decoder[0].weight.mul_(6.0)
        at = torch.tensor(centres).repeat(n, 1)[:n]
        x = torch.sigmoid(vae.decoder(at + 0.5 * torch.randn(n, 2))).bernoulli()
        c = torch.tensor(shift)
        vae.decoder[0].bias.sub_(vae.decoder[0].weight @ c)  # decode(z - c)
        vae.head.bias[:2].add_(c)
    opt = torch.optim.Adam([*vae.encoder.parameters(), *vae.head.parameters()], lr=1e-2)
    for _ in range(500):
        opt.zero_grad()
        vae.loss(x)[0].backward()
        opt.step()
    return vae, x


@torch.no_grad()
def reference_nll(vae, x, coarse=0.125, fine=0.02, extent=25.0, keep=30.0):
    """-log p(x) of each image with no encoder and no shared lattice: the Bernoulli pmf and the prior
    written out, on a coarse grid over [-extent, extent]^2, then summed on a fine grid over the box
    where the coarse one came within `keep` nats of its peak."""
    def log_joint(z):  # (G, N)
        logits = vae.decoder(z)
        return (logits @ x.T - F.softplus(logits).sum(1, keepdim=True)
                - 0.5 * (z.pow(2).sum(1, keepdim=True) + 2 * math.log(2 * math.pi)))

    ticks = torch.arange(-extent, extent, coarse) + coarse / 2
    grid = torch.cartesian_prod(ticks, ticks)
    out = []
    for i, row in enumerate(log_joint(grid).T):
        near = grid[row > row.max() - keep]
        lo, hi = near.min(0).values - coarse, near.max(0).values + coarse
        cells = torch.cartesian_prod(torch.arange(lo[0], hi[0], fine), torch.arange(lo[1], hi[1], fine)) + fine / 2
        out.append(-(torch.logsumexp(log_joint(cells)[:, i], 0) + 2 * math.log(fine)))
    return torch.stack(out)


def test_each_image_over_its_own_region_is_every_image_over_the_union_masked():
    """Posteriors in two clusters 13 apart, far from the origin: the union of the regions spans both, and
    each image is integrated over its own. The NLL is the masked union's (the code before, kept in
    bench/quadrature.py) to float rounding, and so is the edge diagnostic: the regions are the same, with a
    square too small to hold the mass too."""
    vae, x = far_vae(n=8, centres=((4.0, -3.0), (-6.0, 5.0)))
    with torch.no_grad():
        mu = vae.encode(x)[0]
    assert (mu[0::2] - mu[1::2]).norm(dim=1).min() > 10
    bench = load_bench("quadrature")
    for region in [(6.0, 0.05, 10.0), (2.0, 0.1, 3.0)]:
        own, union = scores.quadrature_nll(vae, x, *region), bench.masked_union_nll(vae, x, *region)
        assert torch.allclose(own.nll, union.nll, rtol=1e-6, atol=0)
        assert torch.allclose(own.edge, union.edge, rtol=0, atol=1e-3)


def test_the_quadrature_follows_posteriors_far_from_the_origin_and_says_when_its_region_is_too_small(capsys,
                                                                                                   monkeypatch):
    vae, x = far_vae()
    with torch.no_grad():
        mu, logvar = vae.encode(x)
    assert (mu.norm(dim=1) > 15).all() and ((0.5 * logvar).exp() < 0.5).all()  # nowhere near [-6, 6]^2
    reference = reference_nll(vae, x)
    cfg = SimpleNamespace(quadrature_range=6.0, quadrature_step=0.05, quadrature_sds=10.0)
    nll, edge = scores.quadrature_nll(vae, x, cfg.quadrature_range, cfg.quadrature_step, cfg.quadrature_sds)
    assert (nll - reference).abs().max() < 0.01
    torch.manual_seed(1)
    is_nll = scores.importance_nll(vae, x, 1000)
    m = scores.quadrature_metrics(vae, x, is_nll, cfg)
    assert m["quadrature_edge_to_peak"] < scores.EDGE_LIMIT and m["is_gap_below_noise"] == 0
    assert m["is_gap_mean"] > -3 * m["is_gap_sd_of_mean"] and "missed mass" not in capsys.readouterr().err
    # q's means moved 3 units (about 15 sds) off the posteriors: p(x) is the decoder's and the prior's, the
    # same, and the scan around the boxes still finds the mass...
    astray = copy.deepcopy(vae)
    with torch.no_grad():
        astray.head.bias[:2].add_(3.0)
    assert (scores.quadrature_nll(astray, x, 6.0, 0.05, 10.0).nll - reference).abs().max() < 0.01
    # ...and with a square and boxes too small to reach it, the scan grows until it holds the mass...
    small = SimpleNamespace(quadrature_range=1.0, quadrature_step=0.05, quadrature_sds=1.0)
    assert scores.quadrature_metrics(astray, x, is_nll, small)["nll_quadrature_bernoulli"] == pytest.approx(
        m["nll_quadrature_bernoulli"], abs=0.01)
    # ...but where the region misses the mass (here the scan cut to q's box), the edge says so, and so does
    # IS, an upper bound, lying below.
    def q_box(model, x, half_width, sds, step):
        mu, reach = scores.posterior_reach(model, x, half_width, sds)
        return mu - reach, mu + reach

    monkeypatch.setattr(scores, "far_mass", q_box)
    lost = scores.quadrature_metrics(astray, x, is_nll, small)
    assert lost["nll_quadrature_bernoulli"] > m["nll_quadrature_bernoulli"] + 1
    assert lost["quadrature_edge_to_peak"] > scores.EDGE_LIMIT and lost["is_gap_below_noise"] > 0
    assert "the quadrature may have missed mass" in capsys.readouterr().err


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "bench"))  # its own imports (bench/common.py)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return module
