import math

import pytest
import torch

from aevae import model

LIKELIHOODS = ["gaussian", "bernoulli", "continuous_bernoulli"]


def test_recon_loss_is_summed_squared_error_or_cross_entropy():
    x = torch.tensor([[0.0, 1.0, 0.5]])
    logits = torch.zeros(1, 3)  # sigmoid = 0.5 everywhere
    assert model.recon_loss(logits, x, "gaussian").item() == pytest.approx(0.25 + 0.25 + 0)
    assert model.recon_loss(logits, x, "bernoulli").item() == pytest.approx(3 * math.log(2))


def test_gaussian_recon_nll_is_the_density_of_variance_one_half():
    logits, x = torch.randn(4, 784), torch.rand(4, 784)
    expected = -torch.distributions.Normal(logits.sigmoid(), math.sqrt(0.5)).log_prob(x).sum(-1)
    assert torch.allclose(model.recon_nll(logits, x, "gaussian"), expected, rtol=1e-5)


@pytest.mark.parametrize("logit", [0.0, 1e-4, -5e-3, 9e-3, 0.011, 0.3, -2.0, 8.0, -25.0])
def test_the_continuous_bernoulli_normaliser_matches_numerical_integration(logit):
    lam = torch.sigmoid(torch.tensor(logit, dtype=torch.float64))
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    integral = torch.trapezoid(lam**x * (1 - lam) ** (1 - x), x)  # of the unnormalised density
    log_c = model.cb_log_norm(torch.tensor(logit, dtype=torch.float64))
    assert log_c.item() == pytest.approx(-math.log(integral.item()), abs=1e-7)  # below 1e-2: the Taylor branch
    # and the float32 the models use stays accurate on both sides of the branch
    assert model.cb_log_norm(torch.tensor(logit)).item() == pytest.approx(log_c.item(), abs=1e-6)


def test_the_continuous_bernoulli_likelihood_is_a_density_on_the_unit_interval():
    logits = torch.tensor([[-3.0], [0.0], [0.5], [6.0]], dtype=torch.float64)
    x = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    nll = model.recon_loss(logits.expand(4, len(x)).reshape(-1, 1), x.repeat(4).reshape(-1, 1),
                                 "continuous_bernoulli")
    mass = torch.trapezoid(torch.exp(-nll).reshape(4, -1), x)
    assert torch.allclose(mass, torch.ones(4, dtype=torch.float64), atol=1e-6)
    means = torch.trapezoid(x * torch.exp(-nll).reshape(4, -1), x)
    assert torch.allclose(model.mean_image(logits[:, 0], "continuous_bernoulli"), means, atol=1e-4)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_likelihoods_are_every_pairs_recon_nll(likelihood):
    logits, x = 3 * torch.randn(5, 784), torch.rand(7, 784)
    pairs = -model.recon_nll(logits.expand(7, 5, 784), x[:, None].expand(7, 5, 784), likelihood)
    assert torch.allclose(model.log_likelihoods(logits, x, likelihood), pairs, rtol=1e-4, atol=1e-2)


def test_the_mean_image_is_the_sigmoid_but_for_the_continuous_bernoulli():
    logits = torch.tensor([-4.0, 0.0, 4.0])
    for likelihood in ("gaussian", "bernoulli"):
        assert torch.equal(model.mean_image(logits, likelihood), logits.sigmoid())
    cb = model.mean_image(logits, "continuous_bernoulli")
    assert cb[1].item() == pytest.approx(0.5) and 0.5 < cb[2] < logits.sigmoid()[2]  # pulled towards 1/2


def test_the_normalisers_next_taylor_term_is_the_one_its_comment_names():
    l = torch.tensor([0.05, 0.1, -0.2], dtype=torch.float64)
    rest = model.cb_log_norm(l) - math.log(2) - l.pow(2) / 12
    assert torch.allclose(rest, -7 * l.pow(4) / 1440, rtol=1e-2)


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_the_reconstructions_cross_entropy_is_of_the_image_the_model_reconstructs(likelihood):
    logits, x = 4 * torch.randn(3, 784, dtype=torch.float64), torch.rand(3, 784, dtype=torch.float64)
    image = model.mean_image(logits, likelihood)
    expected = -(x * image.log() + (1 - x) * (1 - image).log()).sum(-1)
    assert torch.allclose(model.image_cross_entropy(logits, x, likelihood), expected, rtol=1e-6)
    # from the logits, where the sigmoid is the image: finite where it rounds to 0 or 1
    saturated = model.image_cross_entropy(torch.full((1, 784), 40.0), torch.zeros(1, 784), likelihood)
    assert saturated.isfinite().all()
