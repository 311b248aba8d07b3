import math

import pytest
import torch

from aevae import evaluate, model


def test_frechet_distance_of_a_set_to_itself_is_zero_and_sees_a_shift():
    torch.manual_seed(0)
    a = torch.randn(2000, 8) @ torch.randn(8, 8)
    assert evaluate.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shift = torch.tensor([3.0] + [0.0] * 7)
    assert evaluate.frechet_distance(a, a + shift) == pytest.approx(9.0, rel=1e-6)


def test_frechet_distance_of_two_known_gaussians():
    # N(0, I) vs N(0, 4I) in d dims: Tr(I + 4I - 2*2I) = d.
    torch.manual_seed(0)
    a, b = torch.randn(200_000, 3), 2 * torch.randn(200_000, 3)
    assert evaluate.frechet_distance(a, b) == pytest.approx(3.0, rel=0.02)


def test_gaussian_recon_nll_is_the_density_of_variance_one_half():
    logits, x = torch.randn(4, 784), torch.rand(4, 784)
    expected = -torch.distributions.Normal(logits.sigmoid(), math.sqrt(0.5)).log_prob(x).sum(-1)
    assert torch.allclose(evaluate.recon_nll(logits, x, "gaussian"), expected, rtol=1e-5)


@pytest.fixture
def small_vae():
    torch.manual_seed(0)
    return model.VAE([32], 4, likelihood="bernoulli"), torch.rand(400, 784).bernoulli()


def test_importance_estimate_tightens_as_k_grows_and_starts_at_the_elbo(small_vae):
    vae, x = small_vae
    torch.manual_seed(1)
    nelbo = evaluate.reconstruction_metrics(vae, x)["nelbo_bernoulli"]
    nll = {k: evaluate.importance_nll(vae, x, k, chunk=64) for k in (1, 10, 200)}
    assert nll[1] == pytest.approx(nelbo, rel=0.01)  # k = 1 is a one-sample negative ELBO
    assert nll[1] > nll[10] > nll[200]


def test_active_units_count_only_dims_that_vary():
    z = torch.randn(1000, 5)
    assert evaluate.active_units(z) == 5
    z[:, :3] = 0.05 * z[:, :3]  # variance 0.0025 < 0.01
    assert evaluate.active_units(z) == 2


def test_a_vae_with_collapsed_units_has_none_active():
    vae = model.VAE([32], 4)
    with torch.no_grad():
        vae.head.weight.zero_()  # every mean is the bias: the codes do not depend on x
    assert evaluate.active_units(evaluate.codes(vae, torch.rand(100, 784))) == 0


def test_linear_probe_separates_separable_codes_and_not_noise():
    torch.manual_seed(0)
    y = torch.arange(2000) % 10
    centres = 5 * torch.randn(10, 6)
    z = centres[y] + torch.randn(2000, 6)
    assert evaluate.linear_probe(z[:1000], y[:1000], z[1000:], y[1000:]) > 0.95
    noise = torch.randn(2000, 6)
    assert evaluate.linear_probe(noise[:1000], y[:1000], noise[1000:], y[1000:]) < 0.2


def test_fitted_gaussian_samples_follow_the_codes():
    ae = model.AE([16], 2)
    codes = torch.tensor([[5.0, -1.0]]) + torch.tensor([[0.1, 2.0]]) * torch.randn(5000, 2)
    seen = []
    ae.decode = lambda z: seen.append(z) or z
    evaluate.sample(ae, 5000, torch.Generator().manual_seed(0), fitted_to=codes)
    assert torch.allclose(seen[0].mean(0), torch.tensor([5.0, -1.0]), atol=0.1)
    assert torch.allclose(seen[0].std(0), torch.tensor([0.1, 2.0]), rtol=0.05)


def test_classify_gives_features_and_probabilities():
    feats, probs = evaluate.classify(model.Classifier(), torch.rand(7, 784))
    assert feats.shape == (7, 128) and probs.shape == (7, 10)
    assert torch.allclose(probs.sum(1), torch.ones(7))
