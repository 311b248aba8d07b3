import math

import pytest
import torch

from aevae import model


@pytest.mark.parametrize("cls", [model.AE, model.VAE])
def test_shapes(cls):
    net = cls([32, 16], 3)
    x = torch.rand(5, 784)
    z = net.encode(x)
    if cls is model.VAE:
        mu, logvar = z
        assert mu.shape == logvar.shape == (5, 3)
        z = net.reparameterize(mu, logvar)
    assert z.shape == (5, 3)
    out = net.decode(z)
    assert out.shape == (5, 784) and 0 <= out.min() and out.max() <= 1
    logits, kl = net(x)
    assert logits.shape == (5, 784) and kl.shape == (5,)
    assert all(t.shape == () for t in net.loss(x))


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


def test_vae_loss_is_recon_plus_beta_kl():
    torch.manual_seed(0)
    net = model.VAE([8], 2, beta=4.0, likelihood="bernoulli")
    x = torch.rand(3, 784)
    torch.manual_seed(1)
    loss, recon, kl = net.loss(x)
    torch.manual_seed(1)
    logits, kls = net(x)
    assert recon.item() == pytest.approx(model.recon_loss(logits, x, "bernoulli").sum().item())
    assert loss.item() == pytest.approx(recon.item() + 4.0 * kls.sum().item())


def test_reparameterize_passes_gradients_to_mean_and_log_variance():
    net = model.VAE([8], 2)
    mu = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    net.reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


@pytest.mark.parametrize("cls, kwargs", [(model.AE, {}), (model.VAE, {"beta": 2.0, "likelihood": "bernoulli"})])
def test_checkpoint_round_trip(tmp_path, cls, kwargs):
    net = cls([16, 8], 4, **kwargs)
    model.save(net, tmp_path / "m.pt")
    back = model.load(tmp_path / "m.pt")
    assert type(back) is cls and back.args == net.args
    z = torch.randn(2, 4)
    assert torch.equal(back.decode(z), net.decode(z))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind
