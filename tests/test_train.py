import dataclasses

import pytest
import torch

from aevae import UserError, config, data, model
from aevae.train import fit, resolve_device, summary
from conftest import MNIST, needs_mnist

CPU = torch.device("cpu")
COLUMNS = ["epoch", "train_loss", "test_loss", "train_recon", "test_recon", "train_kl", "test_kl", "seconds"]


def small_train_cfg(raw_params, **changes):
    return dataclasses.replace(config.parse(raw_params).train, **changes)


def run(cfg, x, kind="vae", seed=0):
    torch.manual_seed(seed)
    net = model.VAE([64, 32], 8) if kind == "vae" else model.AE([64, 32], 8)
    return net, fit(net, (x[:512],), (x[512:768],), cfg, CPU)


def test_rows_have_the_documented_columns(raw_params):
    cfg = small_train_cfg(raw_params, epochs=2, batch_size=32)
    _, rows = run(cfg, torch.rand(768, 784))
    assert [list(r) for r in rows] == [COLUMNS, COLUMNS]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert r["train_loss"] == pytest.approx(r["train_recon"] + r["train_kl"], rel=1e-5)
    metrics = summary(rows)
    assert metrics["epochs"] == 2 and metrics["test_loss"] == rows[-1]["test_loss"] and "seconds" not in metrics


def test_ae_has_no_kl(raw_params):
    _, rows = run(small_train_cfg(raw_params, epochs=1, batch_size=32), torch.rand(768, 784), kind="ae")
    assert rows[0]["train_kl"] == rows[0]["test_kl"] == 0 and rows[0]["train_loss"] == rows[0]["train_recon"]


def test_same_seed_same_numbers_and_weights(raw_params):
    cfg = small_train_cfg(raw_params, epochs=2, batch_size=32)
    x = torch.rand(768, 784)
    (a, rows_a), (b, rows_b) = run(cfg, x), run(cfg, x)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(rows_a) == strip(rows_b)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    _, rows_c = run(cfg, x, seed=1)
    assert strip(rows_c) != strip(rows_a)


def test_divergence_is_a_clear_error(raw_params):
    cfg = small_train_cfg(raw_params, epochs=3, batch_size=32, lr=1e6)
    message = (
        r"training diverged in epoch 1, step \d+ of 16: the loss became (nan|inf); "
        r"try a smaller train.lr \(now 1000000.0\)"
    )
    with pytest.raises(UserError, match=message):
        run(cfg, torch.rand(768, 784))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(UserError, match="train.device = 'cuda' but no CUDA GPU is available here"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU


@needs_mnist
def test_both_models_learn_real_digits(tmp_path, raw_params):
    data.fetch([str(MNIST)], tmp_path)
    x, _ = data.load(tmp_path, "train", limit=10000)
    test_x, _ = data.load(tmp_path, "test", limit=2000)
    # Squared error of always predicting the mean training image: what a model that learnt nothing scores.
    baseline = (test_x - x.mean(0)).pow(2).sum(1).mean().item()
    cfg = small_train_cfg(raw_params, epochs=3)
    for net in (model.AE([512, 256], 50), model.VAE([512, 256], 50)):
        rows = fit(net, (x,), (test_x,), cfg, CPU)
        assert rows[2]["test_recon"] < rows[0]["test_recon"] < baseline
        assert rows[2]["test_recon"] < 0.8 * baseline


def test_the_loop_trains_a_classifier_too_with_its_own_terms(raw_params):
    torch.manual_seed(0)
    x = torch.rand(600, 784)
    y = (x[:, :392].sum(1) > x[:, 392:].sum(1)).long()  # which half is brighter: learnable
    rows = fit(model.Classifier(), (x[:500], y[:500]), (x[500:], y[500:]), small_train_cfg(raw_params, epochs=3), CPU)
    assert list(rows[0]) == ["epoch", "train_loss", "test_loss", "train_error", "test_error", "seconds"]
    assert rows[-1]["train_error"] < rows[0]["train_error"]
    assert summary(rows)["test_accuracy"] == 1 - rows[-1]["test_error"]


def test_dynamic_binarisation_transforms_each_training_batch(raw_params):
    seen = []

    class Spy(model.AE):
        def loss(self, x):
            seen.append(x)
            return super().loss(x)

    torch.manual_seed(0)
    fit(Spy([8], 2), (torch.full((64, 784), 0.5),), (torch.rand(8, 784),), small_train_cfg(raw_params, epochs=1),
        CPU, transform=torch.bernoulli)
    assert set(seen[0].unique().tolist()) == {0.0, 1.0}
