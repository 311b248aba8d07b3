import subprocess
import sys

import pytest
import yaml

from aevae import UserError, config

from helpers import ROOT


def test_the_shipped_params_load():
    assert config.load(ROOT / "params.yaml") == config.parse(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("model", "z_dim", 0, "model.z_dim = 0 is not accepted; expected an int >= 1"),
        ("model", "hidden_dims", [512, -1], "model.hidden_dims = list is not accepted"),
        ("model", "hidden_dims", [], "model.hidden_dims = list is not accepted"),
        ("train", "epochs", 0, "train.epochs = 0 is not accepted"),
        ("train", "epochs", 2.5, "train.epochs = 2.5 is not accepted; expected an int >= 1"),
        ("train", "epochs", True, "train.epochs = True is not accepted"),
        ("train", "lr", "fast", "train.lr = 'fast' is not accepted; expected a number > 0"),
        ("train", "lr", 0, "train.lr = 0 is not accepted"),
        ("train", "lr", -0.1, "train.lr = -0.1 is not accepted"),
        ("train", "device", "tpu", "train.device = 'tpu' is not accepted; expected auto, cpu or cuda"),
        ("train", "precision", "fp16", "train.precision = 'fp16' is not accepted; expected float32 or bf16"),
        ("evaluate", "device", "gpu", "evaluate.device = 'gpu' is not accepted; expected auto, cpu or cuda"),
        ("render", "device", "mps", "render.device = 'mps' is not accepted; expected auto, cpu or cuda"),
        ("train", "batch_size", 100000, "train.batch_size = 100000 is larger than data.train_size"),
        ("vae", "likelihood", "poisson", "vae.likelihood = 'poisson' is not accepted; expected gaussian, bernoulli or continuous_bernoulli"),
        ("vae", "beta", -1, "vae.beta = -1 is not accepted"),
        ("data", "train_size", 60001, "data.train_size = 60001 is not accepted; expected an int from 2 to 60000"),
        ("data", "train_size", 1, "data.train_size = 1 is not accepted; expected an int from 2 to 60000"),
        ("data", "binarize", "static", "data.binarize = 'static' is not accepted; expected none or dynamic"),
        ("classifier", "epochs", 0, "classifier.epochs = 0 is not accepted; expected an int >= 1"),
        ("evaluate", "nll_samples", 0, "evaluate.nll_samples = 0 is not accepted; expected an int >= 1"),
            ("ae", "prior", "flow", "ae.prior = 'flow' is not accepted; expected diagonal, full or gmm"),
    ],
)
def test_bad_values_name_the_key_and_what_is_accepted(raw_params, section, key, value, message):
    (raw_params[section] if section else raw_params)[key] = value
    with pytest.raises(UserError) as e:
        config.parse(raw_params)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_keys_suggest_the_near_miss(raw_params):
    raw_params["train"]["epoch"] = raw_params["train"].pop("epochs")
    with pytest.raises(UserError, match=r"unknown key 'train.epoch'; did you mean 'train.epochs'\?"):
        config.parse(raw_params)
    raw_params["train"]["epochs"] = raw_params["train"].pop("epoch")
    raw_params["modle"] = raw_params.pop("model")
    with pytest.raises(UserError, match=r"unknown key 'modle'; did you mean 'model'\?"):
        config.parse(raw_params)


def test_missing_key(raw_params):
    del raw_params["vae"]["beta"]
    with pytest.raises(UserError, match=r"missing key 'vae.beta'"):
        config.parse(raw_params)


def test_a_float_without_a_dot_is_a_number_as_dvc_reads_it(tmp_path, raw_params):
    # YAML 1.1 (PyYAML) reads 1e-3 as a string; DVC's YAML 1.2, and so config.load, as a number.
    text = (ROOT / "params.yaml").read_text().replace("lr: 0.001 ", "lr: 1e-3 ", 1)
    assert "lr: 1e-3" in text
    (tmp_path / "params.yaml").write_text(text)
    assert config.load(tmp_path / "params.yaml").train.lr == 0.001
    raw_params["train"]["lr"] = "1e-3"  # a string in the dict is no number: strings are never converted
    with pytest.raises(UserError, match="train.lr = '1e-3' is not accepted; expected a number > 0"):
        config.parse(raw_params)


@pytest.mark.parametrize("text, message", [("", "must be a mapping"), ("train: [1, 2\n", "not valid YAML at line")])
def test_empty_or_broken_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        config.load(path)


def test_stage_with_bad_params_exits_2_with_one_line_and_writes_nothing(tmp_path, raw_params):
    raw_params["model"]["z_dim"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw_params))
    for stage in (["fetch.py"], ["train.py", "vae"], ["train_classifier.py"], ["evaluate.py", "ae"], ["render.py"]):
        run = subprocess.run(
            [sys.executable, ROOT / "stages" / stage[0], *stage[1:]], cwd=tmp_path, capture_output=True, text=True
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr == "error: params.yaml: model.z_dim = 0 is not accepted; expected an int >= 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_threads_in_an_old_params_file_names_the_variable_that_replaced_it(raw_params):
    raw_params = {"threads": "auto", **raw_params}
    with pytest.raises(UserError) as e:
        config.parse(raw_params)
    assert str(e.value).startswith("params: 'threads' is no longer read: ")
    assert "set the environment variable AEVAE_THREADS instead" in str(e.value)
    assert "delete 'threads' from params.yaml" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("section, old, new", [("vae", "iw_samples", "iwae_samples"),
                                               ("evaluate", "iw_samples", "nll_samples")])
def test_a_renamed_key_is_answered_like_a_misspelt_one_with_its_new_name(raw_params, section, old, new):
    raw_params[section][old] = raw_params[section].pop(new)  # a params file from before the rename
    with pytest.raises(UserError) as e:
        config.parse(raw_params)
    message = str(e.value)
    assert message.startswith(f"params: unknown key '{section}.{old}'; did you mean '{section}.{new}'? It was renamed: ")
    assert new in message.split("; accepted: ")[1].split(", ")  # and the section's keys, as for a typo
    assert "\n" not in message
