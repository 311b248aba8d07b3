import pytest
import torch

from aevae import UserError, classifier, config, data, download, model
from aevae.runtime import resolve_device
from aevae.trainer import Diverged, fit

from helpers import MNIST, needs_mnist

CPU = torch.device("cpu")
TERMS = ["loss", "recon", "kl"]


def small_train_cfg(raw_params, **changes):
    return config.parse(raw_params).train.model_copy(update=changes)


def build(raw_params, kind="vae", **vae):
    raw_params["model"].update(hidden_dims=[64, 32], z_dim=8)
    raw_params["vae"].update(vae)
    return model.build(kind, config.parse(raw_params))


def run(cfg, x, raw_params, kind="vae", seed=0, **vae):
    torch.manual_seed(seed)
    net = build(raw_params, kind, **vae)
    logged = []
    epochs = fit(net, (x[:512],), (x[512:768],), cfg, CPU, on_epoch=logged.append)
    assert epochs == logged  # each handed on as it ends
    assert [e.number for e in epochs] == list(range(1, cfg.epochs + 1)) and all(e.seconds > 0 for e in epochs)
    return net, [e.means for e in epochs]


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_each_epoch_has_the_models_terms_and_the_loss_is_recon_plus_beta_kl(raw_params, beta):
    cfg = small_train_cfg(raw_params, epochs=2, batch_size=32)
    _, rows = run(cfg, torch.rand(768, 784), raw_params, beta=beta)
    for r in rows:
        assert list(r) == ["train", "test"] and list(r["train"]) == list(r["test"]) == TERMS
        for t in r.values():
            assert t["loss"] == pytest.approx(t["recon"] + beta * t["kl"], rel=1e-5)
    assert rows[0] != rows[1]


def test_bf16_keeps_float32_weights_and_learns_about_the_same(raw_params):
    cfg = small_train_cfg(raw_params, epochs=2, batch_size=32)
    x = torch.rand(768, 784)
    (_, rows), (net, bf16_rows) = run(cfg, x, raw_params), run(cfg.model_copy(update={"precision": "bf16"}), x, raw_params)
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast: only the matmuls round to bf16
    assert bf16_rows != rows
    for row, bf16_row in zip(rows, bf16_rows):
        for split in ("train", "test"):
            assert bf16_row[split]["loss"] == pytest.approx(row[split]["loss"], rel=0.02)


def test_ae_has_no_kl(raw_params):
    _, rows = run(small_train_cfg(raw_params, epochs=1, batch_size=32), torch.rand(768, 784), raw_params, kind="ae")
    train, test = rows[0]["train"], rows[0]["test"]
    assert train["kl"] == test["kl"] == 0 and train["loss"] == train["recon"]


def test_same_seed_same_numbers_and_weights(raw_params):
    cfg = small_train_cfg(raw_params, epochs=2, batch_size=32)
    x = torch.rand(768, 784)
    (a, rows_a), (b, rows_b) = run(cfg, x, raw_params), run(cfg, x, raw_params)
    assert rows_a == rows_b
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    _, rows_c = run(cfg, x, raw_params, seed=1)
    assert rows_c != rows_a


def test_divergence_is_a_typed_error_that_says_where(raw_params):
    cfg = small_train_cfg(raw_params, epochs=3, batch_size=32, lr=1e6)
    with pytest.raises(Diverged, match=r"^training diverged in epoch 1, step \d+ of 16: the loss became (nan|inf)$"):
        run(cfg, torch.rand(768, 784), raw_params)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(UserError, match="train.device = 'cuda' but no CUDA GPU is available here"):
        resolve_device("cuda", "train.device")
    assert resolve_device("auto", "train.device") == CPU


@needs_mnist
@pytest.mark.slow
def test_both_models_learn_real_digits(tmp_path, raw_params):
    download.fetch([str(MNIST)], tmp_path)
    x, _ = data.load(tmp_path, "train", limit=10000)
    test_x, _ = data.load(tmp_path, "test", limit=2000)
    # Squared error of always predicting the mean training image: what a model that learnt nothing scores.
    baseline = (test_x - x.mean(0)).pow(2).sum(1).mean().item()
    cfg = small_train_cfg(raw_params, epochs=3)
    p = config.parse(raw_params)
    for kind in model.KINDS:
        recon = [e.means["test"]["recon"] for e in fit(model.build(kind, p), (x,), (test_x,), cfg, CPU)]
        assert recon[2] < recon[0] < baseline
        assert recon[2] < 0.8 * baseline


def test_the_loop_trains_a_classifier_too_with_its_own_terms(raw_params):
    torch.manual_seed(0)
    x = torch.rand(600, 784)
    y = (x[:, :392].sum(1) > x[:, 392:].sum(1)).long()  # which half is brighter: learnable
    cfg = small_train_cfg(raw_params, epochs=3)
    rows = [e.means for e in fit(classifier.Classifier(), (x[:500], y[:500]), (x[500:], y[500:]), cfg, CPU)]
    assert list(rows[0]["train"]) == list(rows[0]["test"]) == ["loss", "misclassified"]
    assert rows[-1]["train"]["misclassified"] < rows[0]["train"]["misclassified"]


def test_dynamic_binarisation_transforms_each_training_batch(raw_params):
    seen = []

    net = build(raw_params, "ae")
    loss = net.loss
    net.loss = lambda x, epoch=None: seen.append(x) or loss(x, epoch)
    torch.manual_seed(0)
    fit(net, (torch.full((64, 784), 0.5),), (torch.rand(8, 784),), small_train_cfg(raw_params, epochs=1),
        CPU, transform=data.batch_transform("dynamic"))
    assert set(seen[0].unique().tolist()) == {0.0, 1.0}
