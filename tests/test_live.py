"""aevae.live: DVCLive's files for a training stage, and a failed run that leaves the earlier ones."""

import json
from types import SimpleNamespace

import pytest

from aevae import live
from aevae.live import read_curves

EPOCHS = [{"train": {"loss": 3.0, "kl": 1.0}, "test": {"loss": 2.5, "kl": 0.5}},
          {"train": {"loss": 2.0, "kl": 0.75}, "test": {"loss": 1.5, "kl": 0.25}}]


def log(folder, epochs):
    with live.logger(folder) as logger:
        for number, means in enumerate(epochs, 1):
            logger.epoch(SimpleNamespace(number=number, means=means))


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
