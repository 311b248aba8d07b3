import math
import re

import pytest
import torch

from aevae import UserError, config, model

from helpers import ROOT

KINDS = list(model.KINDS)


@pytest.fixture(params=KINDS)
def net(request):
    torch.manual_seed(0)
    return model.KINDS[request.param]([32, 16], 3)


def test_every_autoencoder_offers_the_interface(net):
    x = torch.rand(5, 784)
    assert net.code(x).shape == (5, 3)
    out = net.decode(torch.randn(5, 3))
    assert out.shape == (5, 784) and 0 <= out.min() and out.max() <= 1
    logits, kl = net(x)
    assert logits.shape == (5, 784) and kl.shape == (5,)
    terms = net.terms(logits, kl, x)
    assert all(t.shape == (5,) for t in terms)
    assert all(t.shape == () for t in net.loss(x))
    assert net.reconstruct(x).shape == (5, 784)
    mean, std = net.prior(torch.randn(100, 3))
    assert mean.shape == std.shape == (3,)
    assert net.sample(7, torch.Generator().manual_seed(0), torch.randn(100, 3)).shape == (7, 784)
    assert isinstance(net.density, bool) and net.code_name and net.prior_name


def test_build_follows_the_params(raw_params):
    raw_params["model"].update(hidden_dims=[64, 32], z_dim=4)
    raw_params["vae"].update(beta=3.0, likelihood="bernoulli")
    p = config.parse(raw_params)
    for kind in KINDS:
        net = model.build(kind, p)
        assert type(net) is model.KINDS[kind] and net.z_dim == 4
    vae = model.build("vae", p)
    assert (vae.beta, vae.likelihood) == (3.0, "bernoulli")
    with pytest.raises(UserError, match="unknown model 'gan'; accepted: ae, vae"):
        model.build("gan", p)


def test_vae_architecture_is_the_articles():
    net = model.VAE([512, 256], 50)
    linear = {name: m for name, m in net.named_modules() if isinstance(m, torch.nn.Linear)}
    layers = {name: (m.in_features, m.out_features) for name, m in linear.items()}
    assert layers == {
        "encoder.0": (784, 512), "encoder.2": (512, 256),
        "head": (256, 100),  # the mean and log-variance heads, 50 each
        "decoder.0": (50, 256), "decoder.2": (256, 512), "decoder.4": (512, 784),
    }
    assert isinstance(net.encoder[-1], torch.nn.ReLU) and isinstance(net.decoder[-1], torch.nn.Linear)


def test_kl_matches_a_monte_carlo_estimate():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 6), torch.randn(4, 6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    assert torch.allclose(model.kl_divergence(mu, logvar), mc, rtol=0.02, atol=0.02)
    assert model.kl_divergence(torch.zeros(1, 6), torch.zeros(1, 6)).item() == 0.0


def test_recon_loss_is_summed_squared_error_or_cross_entropy():
    x = torch.tensor([[0.0, 1.0, 0.5]])
    logits = torch.zeros(1, 3)  # sigmoid = 0.5 everywhere
    assert model.recon_loss(logits, x, "gaussian").item() == pytest.approx(0.25 + 0.25 + 0)
    assert model.recon_loss(logits, x, "bernoulli").item() == pytest.approx(3 * math.log(2))


def test_gaussian_recon_nll_is_the_density_of_variance_one_half():
    logits, x = torch.randn(4, 784), torch.rand(4, 784)
    expected = -torch.distributions.Normal(logits.sigmoid(), math.sqrt(0.5)).log_prob(x).sum(-1)
    assert torch.allclose(model.recon_nll(logits, x, "gaussian"), expected, rtol=1e-5)


@pytest.mark.parametrize("beta, likelihood", [(1.0, "gaussian"), (4.0, "bernoulli"), (0.25, "gaussian")])
def test_vae_loss_is_recon_plus_beta_kl(beta, likelihood):
    torch.manual_seed(0)
    net = model.VAE([8], 2, beta=beta, likelihood=likelihood)
    x = torch.rand(3, 784)
    torch.manual_seed(1)
    loss, recon, kl = net.loss(x)
    torch.manual_seed(1)
    logits, kls = net(x)
    assert recon.item() == pytest.approx(model.recon_loss(logits, x, likelihood).sum().item())
    assert kl.item() == pytest.approx(kls.sum().item())
    assert loss.item() == pytest.approx(recon.item() + beta * kls.sum().item())


def test_the_ae_loss_is_squared_error_and_has_no_kl():
    net = model.AE([8], 2)
    x = torch.rand(3, 784)
    loss, recon, kl = net.loss(x)
    assert kl.item() == 0 and loss.item() == recon.item()
    assert recon.item() == pytest.approx((net.reconstruct(x) - x).pow(2).sum().item(), rel=1e-5)


def test_reparameterize_passes_gradients_to_mean_and_log_variance():
    net = model.VAE([8], 2)
    mu = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    net.reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def test_priors_the_ae_fits_a_gaussian_to_its_codes_the_vae_has_n01():
    codes = torch.tensor([[5.0, -1.0]]) + torch.tensor([[0.1, 2.0]]) * torch.randn(5000, 2)
    mean, std = model.AE([16], 2).prior(codes)
    assert torch.allclose(mean, torch.tensor([5.0, -1.0]), atol=0.1)
    assert torch.allclose(std, torch.tensor([0.1, 2.0]), rtol=0.05)
    mean, std = model.VAE([16], 2).prior(codes)
    assert torch.equal(mean, torch.zeros(2)) and torch.equal(std, torch.ones(2))


def test_samples_decode_draws_from_the_prior():
    ae = model.AE([16], 2)
    codes = torch.tensor([[5.0, -1.0]]) + torch.tensor([[0.1, 2.0]]) * torch.randn(5000, 2)
    seen = []
    ae.decode = lambda z: seen.append(z) or z
    ae.sample(5000, torch.Generator().manual_seed(0), codes)
    assert torch.allclose(seen[0].mean(0), torch.tensor([5.0, -1.0]), atol=0.1)
    assert torch.allclose(seen[0].std(0), torch.tensor([0.1, 2.0]), rtol=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip(tmp_path, raw_params, kind):
    raw_params["vae"].update(beta=2.0, likelihood="bernoulli")
    raw_params["model"].update(hidden_dims=[16, 8], z_dim=4)
    net = model.build(kind, config.parse(raw_params))
    model.save(net, tmp_path / "m.pt")
    back = model.load(tmp_path / "m.pt")
    assert type(back) is type(net) and back.args == net.args and (back.beta, back.likelihood) == (net.beta, net.likelihood)
    z = torch.randn(2, 4)
    assert torch.equal(back.decode(z), net.decode(z))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


def test_a_missing_model_names_the_stage_that_makes_it(tmp_path):
    with pytest.raises(UserError, match=r"models/vae.pt: not found; train it first: dvc repro train_vae"):
        model.load(tmp_path / "models/vae.pt")


def test_no_code_outside_the_model_module_checks_a_model_class():
    classes = "|".join(["Autoencoder", *(cls.__name__ for cls in model.KINDS.values())])
    check = re.compile(rf"isinstance\([^)]*\b({classes})\b|\b({classes})\(|type\([^)]*\) is")
    for path in [*(ROOT / "src/aevae").glob("*.py"), *(ROOT / "stages").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        if path.name != "model.py":
            assert not check.search(path.read_text()), f"{path} names a model class: use the interface and build()"
