"""params.yaml, parsed once into a typed, validated, immutable object.

Every key must be present and known: params.yaml is the single source of the
defaults, so the code holds none that could drift from it. A bad value stops
the stage with one line that names the key and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from aevae import UserError

MNIST_TRAIN_SIZE = 60_000


def spec(accepted: str, check=lambda v: True):
    """A field with a range check and the words that describe what it accepts."""
    return field(metadata={"accepted": accepted, "check": check})


@dataclass(frozen=True)
class DataParams:
    train_size: int = spec(f"an int from 1 to {MNIST_TRAIN_SIZE}", lambda v: 1 <= v <= MNIST_TRAIN_SIZE)
    mirrors: tuple[str, ...] = spec("a list of base URLs or folders holding the MNIST files")
    binarize: Literal["none", "dynamic"] = spec("none or dynamic")


@dataclass(frozen=True)
class ModelParams:
    """The networks every autoencoder shares (aevae.model): mlp reads hidden_dims, conv reads channels."""

    hidden_dims: tuple[int, ...] = spec(
        "a non-empty list of ints >= 1, e.g. [512, 256]", lambda v: len(v) > 0 and min(v) >= 1
    )
    z_dim: int = spec("an int >= 1", lambda v: v >= 1)
    arch: Literal["mlp", "conv"] = spec("mlp or conv")
    channels: tuple[int, ...] = spec(
        "a list of 1 to 4 ints >= 1, e.g. [32, 64] (each convolution halves the 28-pixel side)",
        lambda v: 1 <= len(v) <= 4 and min(v) >= 1,
    )


@dataclass(frozen=True)
class TrainParams:
    epochs: int = spec("an int >= 1", lambda v: v >= 1)
    batch_size: int = spec("an int >= 1", lambda v: v >= 1)
    lr: float = spec("a number > 0", lambda v: v > 0)
    weight_decay: float = spec("a number >= 0", lambda v: v >= 0)
    seed: int = spec("an int >= 0", lambda v: v >= 0)
    device: Literal["auto", "cpu", "cuda"] = spec("auto, cpu or cuda")
    precision: Literal["float32", "bf16"] = spec("float32 or bf16")


@dataclass(frozen=True)
class ClassifierParams(TrainParams):
    train_size: int = spec(f"an int from 1 to {MNIST_TRAIN_SIZE}", lambda v: 1 <= v <= MNIST_TRAIN_SIZE)


@dataclass(frozen=True)
class VAEParams:
    beta: float = spec("a number >= 0", lambda v: v >= 0)
    likelihood: Literal["gaussian", "bernoulli", "continuous_bernoulli"] = spec(
        "gaussian, bernoulli or continuous_bernoulli")
    kl_warmup_epochs: int = spec("an int >= 0", lambda v: v >= 0)
    iwae_samples: int = spec("an int >= 1", lambda v: v >= 1)


@dataclass(frozen=True)
class AEParams:
    prior: Literal["diagonal", "full", "gmm"] = spec("diagonal, full or gmm")
    gmm_components: int = spec("an int >= 1", lambda v: v >= 1)


@dataclass(frozen=True)
class EvaluateParams:
    seed: int = spec("an int >= 0", lambda v: v >= 0)
    nll_samples: int = spec("an int >= 1", lambda v: v >= 1)
    samples: int = spec("an int >= 2", lambda v: v >= 2)
    quadrature_range: float = spec("a number > 0", lambda v: v > 0)
    quadrature_step: float = spec("a number > 0", lambda v: v > 0)
    quadrature_sds: float = spec("a number > 0", lambda v: v > 0)
    device: Literal["auto", "cpu", "cuda"] = spec("auto, cpu or cuda")


@dataclass(frozen=True)
class RenderParams:
    seed: int = spec("an int >= 0", lambda v: v >= 0)
    device: Literal["auto", "cpu", "cuda"] = spec("auto, cpu or cuda")


@dataclass(frozen=True)
class Params:
    data: DataParams
    model: ModelParams
    train: TrainParams
    ae: AEParams
    vae: VAEParams
    classifier: ClassifierParams
    evaluate: EvaluateParams
    render: RenderParams

    def __post_init__(self):
        if self.train.batch_size > self.data.train_size:
            raise UserError(
                f"train.batch_size = {self.train.batch_size} is larger than data.train_size = "
                f"{self.data.train_size}; accepted: at most data.train_size"
            )


def load(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read params ({e.strerror})") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UserError(f"{path}: not valid YAML{line}; expected a mapping of sections") from None
    return parse(raw, source=str(path))


def parse(raw, source: str = "params") -> Params:
    """Build Params from a plain dict (as read from YAML), or raise UserError naming the bad key."""
    try:
        return _build(Params, raw, "")
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


# Keys that params.yaml no longer holds, and where their setting went.
RETIRED = {
    "threads": "the thread count changes no result, so it is no param (a change would rerun every stage): set "
               "the environment variable AEVAE_THREADS instead (auto or an int, e.g. AEVAE_THREADS=1 dvc repro) "
               "and delete 'threads' from params.yaml",
}


# Keys that were renamed, with what tells the new name apart: the old one is answered as a misspelling.
RENAMED = {
    "vae.iw_samples": ("vae.iwae_samples", "IWAE's k in training, not evaluate.nll_samples (the NLL estimate's)"),
    "evaluate.iw_samples": ("evaluate.nll_samples",
                            "the NLL estimate's importance samples, not vae.iwae_samples (IWAE's k in training)"),
}


def _build(cls, raw, prefix: str):
    names = [f.name for f in dataclasses.fields(cls)]
    where = prefix.rstrip(".") or "the file"
    if not isinstance(raw, dict):
        raise UserError(f"{where} must be a mapping with keys {', '.join(names)}; got {_show(raw)}")
    for key in raw:
        if f"{prefix}{key}" in RETIRED:
            raise UserError(f"'{prefix}{key}' is no longer read: {RETIRED[prefix + key]}")
        if key not in names:
            if f"{prefix}{key}" in RENAMED:
                new, why = RENAMED[prefix + key]
                hint = f"did you mean '{new}'? It was renamed: {why}; "
            else:
                near = difflib.get_close_matches(str(key), names, n=1)
                hint = f"did you mean '{prefix}{near[0]}'? " if near else ""
            raise UserError(f"unknown key '{prefix}{key}'; {hint}accepted: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name not in raw:
            raise UserError(f"missing key '{key}'")
        if dataclasses.is_dataclass(hints[f.name]):
            values[f.name] = _build(hints[f.name], raw[f.name], key + ".")
            continue
        value = _convert(raw[f.name], hints[f.name])
        if value is None or not f.metadata["check"](value):
            raise UserError(f"{key} = {_show(raw[f.name])} is not accepted; expected {f.metadata['accepted']}")
        values[f.name] = value
    return cls(**values)


def _convert(value, tp):
    """The value as type tp, or None when it is not one. Never coerces silently across kinds."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):  # the first of its types that takes the value
        return next((v for v in (_convert(value, t) for t in typing.get_args(tp)) if v is not None), None)
    if origin is Literal:
        return value if value in typing.get_args(tp) else None
    if origin is tuple:
        if not isinstance(value, list):
            return None
        items = [_convert(v, typing.get_args(tp)[0]) for v in value]
        return None if any(i is None for i in items) else tuple(items)
    if isinstance(value, bool):  # YAML's yes/true must not pass as 1
        return None
    if tp is int:
        return value if isinstance(value, int) else None
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                return None
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    if tp is str:
        return value if isinstance(value, str) and value else None
    raise TypeError(f"unsupported params type {tp}")


def _show(value) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
