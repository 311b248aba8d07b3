"""aevae.trainer around the loop: the DVCLive log, and `stage`, the frame of every training stage: what it
leaves after success and after failure, and the params that stamp its checkpoint."""

import json
from types import SimpleNamespace

import pytest
import torch

from aevae import UserError, classifier, config, runtime, trainer
from aevae.figures import read_curves
from aevae.trainer import checkpoint_for, stage_params

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
    with trainer.stage("toy", p, "classifier", __file__) as run:
        last = run.train(classifier.Classifier(), train, test)
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
        with trainer.stage("toy", config.parse(raw_params), "classifier", __file__) as run:
            run.train(classifier.Classifier(), train, test)
    assert not (folder / "metrics/toy/time.json").exists() and not (folder / "metrics/toy/train").exists()


def test_figures_beside_the_losses_are_logged_each_epoch(stage_dir):
    folder, raw_params, _ = stage_dir
    train, test = data()
    with trainer.stage("toy", config.parse(raw_params), "classifier", __file__) as run:
        run.train(classifier.Classifier(), train, test, also_log={"kl_weight": lambda epoch: epoch / 2})
    assert json.loads((folder / "metrics/toy/train/metrics.json").read_text())["kl_weight"] == 1.0  # the last epoch's
    assert (folder / "metrics/toy/train/plots/metrics/kl_weight.tsv").read_text() == "step\tkl_weight\n1\t0.5\n2\t1.0\n"


def test_a_checkpoint_is_stamped_with_the_resolved_device_and_the_torch_version(stage_dir, monkeypatch):
    """`device: auto` resolves to a CPU here and CUDA there: a checkpoint from one is not resumed on the other."""
    stamp = lambda device: checkpoint_for("toy", {"train": 1}, __file__, torch.device(device)).stamp
    assert stamp("cpu") == stamp("cpu") != stamp("cuda")
    before = stamp("cpu")
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    assert stamp("cpu") != before


def test_a_checkpoint_is_stamped_with_the_params_dvc_yaml_says_the_stage_reads(raw_params, monkeypatch, tmp_path):
    p = config.parse(raw_params)
    monkeypatch.chdir(ROOT)
    assert stage_params("train_vae", p) == {key: raw_params[key] for key in ("data", "model", "train", "vae")} | {
        "data": {"train_size": 60000, "binarize": "none"}}  # of data, the keys it reads alone
    assert stage_params("train_classifier", p) == {"classifier": raw_params["classifier"]}
    monkeypatch.chdir(tmp_path)  # no DVC project: every param stamps it
    assert stage_params("train_vae", p) == p.model_dump()

EPOCHS = [{"train": {"loss": 3.0, "kl": 1.0}, "test": {"loss": 2.5, "kl": 0.5}},
          {"train": {"loss": 2.0, "kl": 0.75}, "test": {"loss": 1.5, "kl": 0.25}}]


def log(folder, epochs):
    with trainer.logger(folder) as logger:
        for number, means in enumerate(epochs, 1):
            logger.epoch(SimpleNamespace(number=number, means=means), {})


def files(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_each_epoch_is_a_step_in_deterministic_files_and_no_dvc_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no git or DVC repository here, as in a stage's folder outside DVC
    log("run", EPOCHS)
    first = files(tmp_path / "run")
    assert sorted(first) == ["metrics.json"] + [f"plots/metrics/{s}/{t}.tsv" for s in ("test", "train")
                                                for t in ("kl", "loss")]
    assert json.loads(first["metrics.json"]) == EPOCHS[-1] | {"step": 2}
    assert first["plots/metrics/test/loss.tsv"] == b"step\tloss\n1\t2.5\n2\t1.5\n"  # no timestamp column
    assert read_curves("run") == {f"{s}/{t}": ([1, 2], [e[s][t] for e in EPOCHS]) for s in ("train", "test")
                                  for t in ("loss", "kl")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no dvc.yaml, no report

    log("run", EPOCHS)
    assert files(tmp_path / "run") == first  # the same figures, the same bytes


def test_a_run_that_fails_midway_leaves_the_previous_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log("run", EPOCHS)
    before = files(tmp_path / "run")

    def failing():
        yield EPOCHS[1]
        raise KeyboardInterrupt  # or a divergence: any exception

    with pytest.raises(KeyboardInterrupt):
        log("run", failing())
    assert files(tmp_path / "run") == before

    with pytest.raises(KeyboardInterrupt):
        log("new", failing())
    assert not (tmp_path / "new").exists()
