"""aevae.harness.training, the frame of every training stage: what it leaves after success and after failure, and
the params that stamp its checkpoint."""

import importlib.util
import json

import pytest
import torch
import yaml

from aevae import UserError, classifier, config, harness, model, runtime

from helpers import ROOT


@pytest.fixture
def stage_dir(tmp_path, monkeypatch, raw_params):
    """An empty stage folder (data/mnist holds nothing: the checkpoint's stamp reads it) and tiny params."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/mnist").mkdir(parents=True)
    calls = []
    monkeypatch.setattr(runtime, "setup", lambda pin: calls.append(pin))  # the process's settings
    raw_params["classifier"].update(epochs=2, batch_size=50)
    return tmp_path, raw_params, calls


def data():
    torch.manual_seed(0)
    x = torch.rand(300, 784)
    y = (x[:, :392].sum(1) > x[:, 392:].sum(1)).long()
    return (x[:200], y[:200]), (x[200:], y[200:])


def test_a_finished_stage_leaves_its_log_and_time_and_no_checkpoint(stage_dir):
    folder, raw_params, calls = stage_dir
    p = config.parse(raw_params)
    train, test = data()
    with harness.training("toy", p, "classifier", __file__) as run:
        last = run.fit(classifier.Classifier(), train, test, ["classifier"])
        assert (folder / "checkpoints/toy.pt").exists()  # written after every epoch
    assert calls == [True]  # the pinned code paths of float32
    assert set(last) == {"train", "test"} and set(last["test"]) == {"loss", "misclassified"}
    logged = json.loads((folder / "metrics/toy/train/metrics.json").read_text())
    assert logged["step"] == 2 and logged["test"] == pytest.approx(last["test"])
    assert json.loads((folder / "metrics/toy/time.json").read_text())["train_seconds"] == round(run.seconds, 2)
    assert not (folder / "checkpoints").exists()


def test_a_diverged_stage_says_which_learning_rate_to_lower_and_leaves_no_time_file(stage_dir):
    folder, raw_params, _ = stage_dir
    raw_params["classifier"]["lr"] = 1e9
    train, test = data()
    with pytest.raises(UserError, match=r"diverged in epoch \d.*; try a smaller classifier\.lr \(now 1000000000\.0\)$"):
        with harness.training("toy", config.parse(raw_params), "classifier", __file__) as run:
            run.fit(classifier.Classifier(), train, test, [])
    assert not (folder / "metrics/toy/time.json").exists() and not (folder / "metrics/toy/train").exists()


def test_figures_beside_the_losses_are_logged_each_epoch(stage_dir):
    folder, raw_params, _ = stage_dir
    train, test = data()
    with harness.training("toy", config.parse(raw_params), "classifier", __file__) as run:
        run.fit(classifier.Classifier(), train, test, ["classifier"], extra=lambda epoch: {"kl_weight": epoch / 2})
    assert json.loads((folder / "metrics/toy/train/metrics.json").read_text())["kl_weight"] == 1.0  # the last epoch's
    assert (folder / "metrics/toy/train/plots/metrics/kl_weight.tsv").read_text() == "step\tkl_weight\n1\t0.5\n2\t1.0\n"


def test_a_checkpoint_is_stamped_with_the_resolved_device_and_the_torch_version(stage_dir, monkeypatch):
    """`device: auto` resolves to a CPU here and CUDA there: a checkpoint from one is not resumed on the other."""
    from aevae.train import checkpoint_for

    stamp = lambda device: checkpoint_for("toy", {"train": 1}, __file__, torch.device(device)).stamp
    assert stamp("cpu") == stamp("cpu") != stamp("cuda")
    before = stamp("cpu")
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert stamp("cpu") != before


def script(name: str):
    """A stage script, imported as a module (its main() not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_params_that_stamp_each_training_checkpoint_are_the_ones_dvc_yaml_says_the_stage_reads():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train = script("train")
    for kind in model.KINDS:
        assert stages[f"train_{kind}"]["cmd"] == f"python stages/train.py {kind}"
        assert train.reads(kind) == stages[f"train_{kind}"]["params"]
    assert script("train_classifier").READS == stages["train_classifier"]["params"]


def test_the_stamped_values_are_those_of_the_keys_read_and_no_others(raw_params):
    p = config.parse(raw_params)
    assert harness.param_values(p, ["data.train_size", "vae"]) == {"data.train_size": 60000, "vae": {
        "beta": 1.0, "likelihood": "gaussian", "kl_warmup_epochs": 0, "iwae_samples": 1}}
