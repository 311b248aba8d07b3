import re

import pytest
import torch
from pydantic import Field, ValidationError, create_model
from torch import nn

from aevae import MODEL_FORMAT, MissingModel, UserError, classifier, config, model
from aevae.model import recon_loss, recon_nll

from helpers import ROOT, make_model

KINDS = list(model.KINDS)


@pytest.fixture(params=[(kind, arch) for kind in KINDS for arch in ("mlp", "conv")])
def net(request):
    torch.manual_seed(0)
    kind, arch = request.param
    return make_model(kind, hidden_dims=(32, 16), z_dim=3, arch=arch, channels=(4, 8))


def test_every_autoencoder_offers_the_interface(net):
    x = torch.rand(5, 784)
    assert net.code(x).shape == (5, 3)
    out = net.decode(torch.randn(5, 3))
    assert out.shape == (5, 784) and 0 <= out.min() and out.max() <= 1
    logits, kl, code = net(x)
    assert logits.shape == (5, 784) and kl.shape == (5,)
    assert torch.equal(code, net.code(x))  # a VAE's code is its posterior mean: no sampling in it
    per_image = net.per_image_losses(logits, kl, x)
    assert all(t.shape == (5,) for t in per_image)
    assert all(t.shape == () for t in net.loss(x))
    assert net.reconstruct(x).shape == (5, 784)
    net.estimate_prior(x, torch.Generator().manual_seed(0))
    assert net.prior_sample(7, torch.Generator().manual_seed(0)).shape == (7, 3)
    assert net.sample(7, torch.Generator().manual_seed(0)).shape == (7, 784)
    # what the figures' captions say, and whether evaluation asks for a density
    assert (net.code_name, net.prior_name, net.density) == {
        model.AE: ("codes", "z ~ diagonal Gaussian fitted to training codes", False),
        model.VAE: ("posterior means", "z ~ N(0, I)", True),
    }[type(net)]
    assert net.density == hasattr(net, "log_weights")  # what the importance-sampled NLL is made of


def test_build_follows_the_params(raw_params):
    raw_params["model"].update(hidden_dims=[64, 32], z_dim=4)
    raw_params["vae"].update(beta=3.0, likelihood="bernoulli")
    p = config.parse(raw_params)
    for kind in KINDS:
        net = model.build(kind, p)
        assert type(net) is model.KINDS[kind] and net.code(torch.rand(2, 784)).shape == (2, 4)
    # The file records what builds the model, not the params sections: the mlp's widths and no channels.
    assert model.build("ae", p).model_args() == {"arch": "mlp", "widths": [64, 32], "z_dim": 4, "prior": "diagonal",
                                                 "components": 1}
    assert model.build("vae", p).model_args() == {"arch": "mlp", "widths": [64, 32], "z_dim": 4,
                                                  "likelihood": "bernoulli", "beta": 3.0, "kl_warmup_epochs": 0,
                                                  "iwae_samples": 1}
    raw_params["model"].update(arch="conv", channels=[8])
    raw_params["ae"].update(prior="gmm", gmm_components=5)
    assert model.build("ae", config.parse(raw_params)).model_args() == {
        "arch": "conv", "widths": [8], "z_dim": 4, "prior": "gmm", "components": 5}
    vae = model.build("vae", p)
    assert vae.settings is p.vae and (vae.likelihood, vae.kl_weight()) == ("bernoulli", 3.0)
    with pytest.raises(UserError, match="unknown model 'gan'; accepted: ae, vae"):
        model.build("gan", p)
    with pytest.raises(ValidationError, match="frozen"):
        vae.settings.beta = 1.0


class Linear(model.Autoencoder):
    """A model added the way a new one is: its class alone (and its entry in KINDS). Deterministic
    like the AE, linear, and sampled from N(0, I). It has no section of params.yaml: it is built from
    its Layers alone (arch, widths, z_dim, from the `model` section), which its file records; its
    encoder reads z_dim alone."""

    code_name, prior_name = "codes", "z ~ N(0, I)"

    def __init__(self, layers: config.Layers, settings=None):
        super().__init__(layers)  # the shared decoder, from the Layers
        self.encoder = nn.Linear(784, layers.z_dim)

    def code(self, x):
        return self.encoder(x)

    def forward(self, x):
        code = self.code(x)
        return model.Output(self.decoder(code), x.new_zeros(len(x)), code)

    def prior_sample(self, n, generator):
        return torch.randn(n, self.layers.z_dim, generator=generator)


def test_a_model_added_in_its_class_alone_is_built_trained_saved_and_scored(monkeypatch, raw_params, tmp_path):
    from aevae import scores, trainer

    monkeypatch.setitem(model.KINDS, "linear", Linear)
    raw_params["model"].update(hidden_dims=[32], z_dim=3)
    raw_params["train"].update(epochs=2, batch_size=32)
    p = config.parse(raw_params)
    torch.manual_seed(0)
    net = model.build("linear", p)
    assert type(net) is Linear and net.layers == config.Layers(arch="mlp", widths=[32], z_dim=3)
    x = torch.rand(256, 784)
    history = trainer.fit(net, (x[:192],), (x[192:],), p.train, torch.device("cpu"))
    assert history[-1].means["train"]["loss"] < history[0].means["train"]["loss"]
    model.save(net, tmp_path / "linear.pt")
    assert torch.load(tmp_path / "linear.pt")["model_args"] == {"arch": "mlp", "widths": [32], "z_dim": 3}
    back = model.load(tmp_path / "linear.pt")
    assert type(back) is Linear and back.layers == net.layers
    assert torch.equal(back.decode(torch.ones(1, 3)), net.decode(torch.ones(1, 3)))
    scorer = classifier.for_scoring(classifier.Classifier())
    scorer.reference = (torch.zeros(128, dtype=torch.float64), torch.eye(128, dtype=torch.float64))
    raw_params["evaluate"].update(samples=50)
    metrics, _ = scores.model_metrics(back, scorer, (x[:192], torch.arange(192) % 10, x[192:],
                                                        torch.arange(64) % 10), config.parse(raw_params).evaluate)
    assert "kl" not in metrics and metrics["active_units"] <= 3 and metrics["mse"] > 0


def test_vae_architecture_is_the_articles():
    net = make_model("vae")  # params.yaml: the article's
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


@pytest.mark.parametrize("beta, likelihood", [(1.0, "gaussian"), (4.0, "bernoulli"), (0.25, "gaussian")])
def test_vae_loss_is_recon_plus_beta_kl(beta, likelihood):
    torch.manual_seed(0)
    net = make_model("vae", hidden_dims=(8,), z_dim=2, beta=beta, likelihood=likelihood)
    x = torch.rand(3, 784)
    torch.manual_seed(1)
    loss, recon, kl = net.loss(x)
    torch.manual_seed(1)
    logits, kls, _ = net(x)
    assert recon.item() == pytest.approx(recon_loss(logits, x, likelihood).sum().item())
    assert kl.item() == pytest.approx(kls.sum().item())
    assert loss.item() == pytest.approx(recon.item() + beta * kls.sum().item())


def test_the_ae_loss_is_squared_error_and_has_no_kl():
    net = make_model("ae", hidden_dims=(8,), z_dim=2)
    x = torch.rand(3, 784)
    loss, recon, kl = net.loss(x)
    assert kl.item() == 0 and loss.item() == recon.item()
    assert recon.item() == pytest.approx((net.reconstruct(x) - x).pow(2).sum().item(), rel=1e-5)


def test_reparameterize_passes_gradients_to_mean_and_log_variance():
    net = make_model("vae", hidden_dims=(8,), z_dim=2)
    mu = torch.zeros(3, 2, requires_grad=True)
    logvar = torch.zeros(3, 2, requires_grad=True)
    net.reparameterize(mu, logvar).pow(2).sum().backward()
    assert mu.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0


def ae_with_codes(prior, codes, **kw):
    """An AE whose encoder returns `codes` (whatever the images), with its prior fitted to them."""
    ae = make_model("ae", hidden_dims=(16,), z_dim=codes.shape[1], prior=prior, **kw)
    ae.code = lambda x: codes[: len(x)]
    ae.estimate_prior(torch.zeros(len(codes), 784), torch.Generator().manual_seed(0))
    return ae


def correlated_codes(n=20_000):
    torch.manual_seed(0)
    base = torch.randn(n, 2)
    return torch.stack([5.0 + 0.1 * base[:, 0], -1.0 + 2.0 * (0.8 * base[:, 0] + 0.6 * base[:, 1])], 1)


def test_the_ae_samples_the_diagonal_or_full_gaussian_of_its_training_codes_the_vae_n01():
    codes = correlated_codes()
    g = torch.Generator().manual_seed(1)
    diagonal = ae_with_codes("diagonal", codes).prior_sample(20_000, g)
    full = ae_with_codes("full", codes).prior_sample(20_000, g)
    for z in (diagonal, full):
        assert torch.allclose(z.mean(0), torch.tensor([5.0, -1.0]), atol=0.05)
        assert torch.allclose(z.std(0), torch.tensor([0.1, 2.0]), rtol=0.03)
    corr = lambda z: torch.corrcoef(z.T)[0, 1].item()
    assert corr(codes) == pytest.approx(0.8, abs=0.02)
    assert corr(full) == pytest.approx(0.8, abs=0.02) and abs(corr(diagonal)) < 0.03  # only full keeps it
    vae = make_model("vae", hidden_dims=(16,), z_dim=2)
    z = vae.prior_sample(20_000, g)
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=0.03) and torch.allclose(z.std(0), torch.ones(2), atol=0.03)


def test_the_gmm_prior_finds_the_clusters_a_single_gaussian_blurs():
    torch.manual_seed(0)
    centres = torch.tensor([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    codes = centres[torch.arange(9000) % 3] + 0.5 * torch.randn(9000, 2)
    gmm = ae_with_codes("gmm", codes, gmm_components=3)
    assert torch.allclose(gmm.prior_weights, torch.full((3,), 1 / 3), atol=0.02)
    found = gmm.prior_means[torch.argsort(gmm.prior_means[:, 0] * 10 + gmm.prior_means[:, 1])]
    assert torch.allclose(found, centres[[0, 1, 2]], atol=0.05)
    near = lambda z: (torch.cdist(z, centres).min(1).values < 2).float().mean().item()  # within 4 sd of a centre
    g = torch.Generator().manual_seed(1)
    assert near(gmm.prior_sample(5000, g)) > 0.99
    assert near(ae_with_codes("full", codes).prior_sample(5000, g)) < 0.5  # one Gaussian puts mass between them


@pytest.mark.parametrize("prior", ["diagonal", "full", "gmm"])
def test_every_prior_fits_codes_of_fewer_images_than_dims_and_samples_near_them(prior):
    """train_size <= z_dim, or a layer narrower than z: the codes span a subspace, their covariance is singular."""
    torch.manual_seed(0)
    codes = torch.randn(4, 2) @ torch.randn(2, 6) + 3.0  # 4 codes of rank 2 in 6 dims
    ae = ae_with_codes(prior, codes, gmm_components=4)
    z = ae.prior_sample(20_000, torch.Generator().manual_seed(1))
    assert z.isfinite().all() and torch.allclose(z.mean(0), codes.double().mean(0).float(), atol=0.2)


def test_a_mixture_component_on_a_lone_code_keeps_a_floor_of_the_codes_variance():
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(999, 2), torch.tensor([[40.0, 40.0]])])  # one outlier, far out
    fit = model.gaussian_mixture(codes.double(), 2, torch.Generator().manual_seed(0))
    lone = fit.weights.argmin()
    assert fit.weights[lone] == pytest.approx(1 / 1000, rel=0.01) and torch.allclose(
        fit.means[lone], torch.tensor([40.0, 40.0], dtype=torch.float64), atol=1e-3)
    variances = torch.diagonal(fit.covs[lone])
    assert (variances >= model.COMPONENT_FLOOR * codes.double().var(0)).all()  # it does not replay that one code


def test_em_reports_its_iterations_and_whether_it_converged():
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(500, 2) - 3, torch.randn(500, 2) + 3]).double()
    fit = model.gaussian_mixture(codes, 2, torch.Generator().manual_seed(0))
    assert fit.converged and 1 < fit.iterations < 200
    capped = model.gaussian_mixture(codes, 2, torch.Generator().manual_seed(0), iterations=fit.iterations - 1)
    assert not capped.converged and capped.iterations == fit.iterations - 1
    ae = make_model("ae", hidden_dims=(16,), z_dim=2, prior="gmm", gmm_components=2)
    ae.code = lambda x: codes[: len(x)].float()
    assert ae.estimate_prior(torch.zeros(len(codes), 784), torch.Generator().manual_seed(0)) == {
        "em_iterations": fit.iterations, "em_converged": 1}


def test_em_that_stops_at_its_cap_says_so_on_stderr_and_in_its_report(monkeypatch, capsys):
    torch.manual_seed(0)
    codes = torch.cat([torch.randn(100, 2) - 3, torch.randn(100, 2) + 3]).double()
    capped = model.gaussian_mixture(codes, 2, torch.Generator().manual_seed(0), iterations=1)
    monkeypatch.setattr(model, "gaussian_mixture", lambda *args: capped)
    ae = make_model("ae", hidden_dims=(16,), z_dim=2, prior="gmm", gmm_components=2)
    ae.code = lambda x: codes[: len(x)].float()
    assert ae.estimate_prior(torch.zeros(len(codes), 784), torch.Generator().manual_seed(0)) == {
        "em_iterations": 1, "em_converged": 0}
    assert capsys.readouterr().err == ("ae.prior gmm: EM stopped at its cap of 1 iterations before converging; "
                                       "the mixture is the last iterate\n")


@pytest.mark.parametrize("change, message", [
    ({"data": {"train_size": 1}, "train": {"batch_size": 1}}, r"data.train_size = 1 is not accepted; expected an int from 2"),
    ({"data": {"train_size": 5}, "train": {"batch_size": 5}, "ae": {"prior": "gmm", "gmm_components": 6}},
     r"^ae.gmm_components = 6 is more than data.train_size = 5 .*; accepted: at most data.train_size$"),
])
def test_a_prior_that_cannot_be_fitted_stops_every_stage_before_it_runs(raw_params, change, message):
    for section, values in change.items():
        raw_params[section].update(values)
    with pytest.raises(UserError, match=message):
        config.parse(raw_params)


def test_samples_decode_draws_from_the_prior():
    ae = ae_with_codes("diagonal", correlated_codes())
    seen = []
    ae.decode = lambda z: seen.append(z) or z
    ae.sample(5000, torch.Generator().manual_seed(0))
    assert torch.equal(seen[0], ae.prior_sample(5000, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("kind, arch", [(kind, arch) for kind in KINDS for arch in ("mlp", "conv")])
def test_model_file_round_trip(tmp_path, raw_params, kind, arch):
    raw_params["vae"].update(beta=2.0, likelihood="continuous_bernoulli", kl_warmup_epochs=3, iwae_samples=5)
    raw_params["model"].update(hidden_dims=[16, 8], z_dim=4, arch=arch, channels=[4, 8, 16])
    net = model.build(kind, config.parse(raw_params))
    model.save(net, tmp_path / "m.pt")
    back = model.load(tmp_path / "m.pt")
    assert type(back) is type(net) and back.model_args() == net.model_args()
    assert (back.kl_weight(), back.likelihood) == (net.kl_weight(), net.likelihood)
    z = torch.randn(2, 4)
    assert torch.equal(back.decode(z), net.decode(z))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary left behind


FORMAT_1 = ROOT / "tests/data/format1"  # model files written by the code before files had a format


def grow_the_params(raw_params) -> config.Params:
    """Params with a key added to the `model` section (and its schema), as a new feature would add one."""
    model_section = create_model("ModelParams", __base__=config.ModelParams,
                                 dropout=(float, Field(ge=0, lt=1, description="a number in [0, 1)")))
    grown = create_model("Params", __base__=config.Params, model=(model_section, ...))
    raw_params["model"]["dropout"] = 0.1
    return config.parse(raw_params, schema=grown)


def test_model_files_of_format_1_and_of_today_load_after_a_key_is_added_to_the_params(raw_params, tmp_path):
    raw_params["model"].update(hidden_dims=[16], z_dim=2)
    today = model.build("vae", config.parse(raw_params))
    model.save(today, tmp_path / "vae.pt")
    assert grow_the_params(raw_params).model.dropout == 0.1
    back = model.load(tmp_path / "vae.pt")
    assert back.model_args() == today.model_args() and all(torch.equal(a, b) for a, b in
                                                zip(back.state_dict().values(), today.state_dict().values()))
    # Format 1 held the params sections whole; each loads as the model it was, with its old outputs.
    expected = torch.load(FORMAT_1 / "expected.pt")
    configs = {"ae_mlp_gmm": {"arch": "mlp", "widths": [16, 8], "z_dim": 2, "prior": "gmm", "components": 3},
               "vae_conv": {"arch": "conv", "widths": [4, 8], "z_dim": 2, "likelihood": "bernoulli", "beta": 2.0,
                            "kl_warmup_epochs": 3, "iwae_samples": 4}}
    for name, want in configs.items():
        old = model.load(FORMAT_1 / f"{name}.pt")
        assert old.model_args() == want
        saved = torch.load(FORMAT_1 / f"{name}.pt")["state_dict"]
        assert old.state_dict().keys() == saved.keys()
        assert all(torch.equal(old.state_dict()[k], saved[k]) for k in saved)  # every weight, as written
        # The outputs of the code that wrote them, to float32's rounding: another CPU's kernels round otherwise.
        torch.testing.assert_close(old.decode(torch.linspace(-2, 2, 6).view(3, 2)), expected[name]["decoded"])
        torch.testing.assert_close(old.sample(3, torch.Generator().manual_seed(0)), expected[name]["sample"])
        model.save(old, tmp_path / f"{name}.pt")  # and written again in today's format
        assert torch.load(tmp_path / f"{name}.pt")["format"] == MODEL_FORMAT


def test_a_classifier_file_of_format_1_loads(tmp_path):
    net = classifier.Classifier()
    torch.save({"kind": "classifier", "args": {}, "state_dict": net.state_dict()}, tmp_path / "classifier.pt")
    back = classifier.load(tmp_path / "classifier.pt")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))


def test_a_model_file_of_an_unknown_format_is_one_line_naming_it_and_what_to_do(tmp_path):
    net = make_model("ae", hidden_dims=(8,), z_dim=2)
    model.save(net, tmp_path / "ae.pt")
    saved = torch.load(tmp_path / "ae.pt")
    torch.save({**saved, "format": 3}, tmp_path / "ae.pt")
    with pytest.raises(UserError) as e:
        model.load(tmp_path / "ae.pt")
    assert str(e.value) == (f"{tmp_path / 'ae.pt'}: model file format 3 is not one this code reads (accepted: 1 to "
                            f"{MODEL_FORMAT}); load it with the aevae that wrote it, or retrain it: "
                            "dvc repro -f train_ae")


def test_a_missing_model_is_a_typed_error_naming_the_file(tmp_path):
    with pytest.raises(MissingModel, match=r"models/vae.pt: not found$") as e:
        model.load(tmp_path / "models/vae.pt")
    assert e.value.path == tmp_path / "models/vae.pt"


def test_no_code_outside_the_model_module_checks_a_model_class():
    classes = "|".join(["Autoencoder", *(cls.__name__ for cls in model.KINDS.values())])
    check = re.compile(rf"isinstance\([^)]*\b({classes})\b|\b({classes})\(|type\([^)]*\) is")
    for path in [*(ROOT / "src/aevae").glob("*.py"), *(ROOT / "stages").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        if path.name != "model.py":
            assert not check.search(path.read_text()), f"{path} names a model class: use the interface and build()"


def test_the_conv_arch_is_two_strided_convolutions_each_way_and_reads_channels():
    net = make_model("vae", hidden_dims=(512,), z_dim=2, arch="conv", channels=(32, 64))
    convs = [(m.in_channels, m.out_channels, m.stride) for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(1, 32, (2, 2)), (32, 64, (2, 2))] and net.head.in_features == 64 * 7 * 7
    deconvs = [(m.in_channels, m.out_channels) for m in net.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert deconvs == [(64, 32), (32, 1)]
    assert not any(isinstance(m, torch.nn.Linear) and m.in_features == 512 for m in net.modules())  # no hidden_dims


def test_kl_warmup_ramps_the_kl_weight_up_to_beta_in_its_last_epoch():
    net = make_model("vae", hidden_dims=(8,), z_dim=2, beta=2.0, kl_warmup_epochs=4)
    assert [net.kl_weight(epoch) for epoch in range(1, 7)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert net.kl_weight() == 2.0  # the trained model's objective: a run of 4 epochs ends at it
    x = torch.rand(3, 784)
    for epoch, weight in ((1, 0.5), (None, 2.0)):
        torch.manual_seed(0)
        loss, recon, kl = net.loss(x, epoch=epoch)
        assert loss.item() == pytest.approx(recon.item() + weight * kl.item())
    assert make_model("vae", hidden_dims=(8,), z_dim=2, beta=2.0).kl_weight(1) == 2.0  # no warm-up: beta from the start


def test_iwae_with_one_sample_is_the_elbo_and_more_samples_bound_tighter():
    torch.manual_seed(0)
    net, x = make_model("vae", hidden_dims=(32,), z_dim=4, likelihood="bernoulli"), torch.rand(16, 784).bernoulli()
    mu, logvar = net.encode(x)
    torch.manual_seed(1)
    log_w, nll = net.log_weights(x, 1, q=(mu, logvar))
    torch.manual_seed(1)
    z = net.reparameterize(mu, logvar)  # the same draw
    log_q = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    elbo = -recon_nll(net.decoder(z), x, "bernoulli") + log_p - log_q
    assert torch.allclose(log_w[0], elbo, atol=1e-3)  # k = 1: the log-mean-exp of one weight is the ELBO
    # ... whose expectation has the closed-form KL the k = 1 loss uses
    torch.manual_seed(2)
    many, nll = net.log_weights(x, 20_000, q=(mu, logvar))
    assert torch.allclose((-many - nll).mean(0), model.kl_divergence(mu, logvar), rtol=0.02, atol=0.05)

    losses = {}
    for k in (1, 5, 50):
        iwae = model.VAE(net.layers, net.settings.model_copy(update={"iwae_samples": k}))
        iwae.load_state_dict(net.state_dict())
        torch.manual_seed(3)
        losses[k] = sum(iwae.loss(x).loss.item() for _ in range(20)) / 20
    assert losses[1] > losses[5] > losses[50]  # Burda et al.: the bound tightens with k
    iwae.loss(x).loss.backward()
    assert all(p.grad is not None for p in iwae.parameters())
