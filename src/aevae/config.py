"""params.yaml, parsed by pydantic into one frozen object, a class per section.

Every key must be present and known: params.yaml holds the defaults, so the code holds none that
could drift from it. A bad value stops the stage with one line that names the key and what would be
accepted: each field's `description`.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml import YAML, YAMLError

from aevae import UserError

MNIST_TRAIN_SIZE = 60_000

# The kinds of value params.yaml holds, each with the words its error gives for what it accepts. A
# Literal's error lists its values.
Count = Annotated[int, Field(ge=1, description="an int >= 1")]
Natural = Annotated[int, Field(ge=0, description="an int >= 0")]
Positive = Annotated[float, Field(gt=0, description="a number > 0")]
NonNegative = Annotated[float, Field(ge=0, description="a number >= 0")]
Device = Literal["auto", "cpu", "cuda"]


class Section(BaseModel):
    # strict: YAML's `true` is no int, and 2.5 no epoch count. Numbers must be finite.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class DataParams(Section):
    # At least 2: the AE's prior is fitted to the training codes.
    train_size: int = Field(ge=2, le=MNIST_TRAIN_SIZE, description=f"an int from 2 to {MNIST_TRAIN_SIZE}")
    mirrors: list[Annotated[str, Field(min_length=1)]] = Field(
        description="a list of base URLs or folders holding the MNIST files")
    binarize: Literal["none", "dynamic"]


class Layers(Section):
    """What builds the encoder and the decoder (aevae.model): the mlp's hidden widths or the conv's
    channels, and z's size. A model file records these three, not params.yaml's `model` section."""

    arch: Literal["mlp", "conv"]
    widths: list[int]
    z_dim: int


class ModelParams(Section):
    """The layers every autoencoder shares: mlp reads hidden_dims, conv reads channels."""

    hidden_dims: list[Count] = Field(min_length=1, description="a non-empty list of ints >= 1, e.g. [512, 256]")
    z_dim: Count
    arch: Literal["mlp", "conv"]
    channels: list[Count] = Field(min_length=1, max_length=4, description=(
        "a list of 1 to 4 ints >= 1, e.g. [32, 64] (each convolution halves the 28-pixel side)"))

    def layers(self) -> Layers:
        return Layers(arch=self.arch, widths=self.hidden_dims if self.arch == "mlp" else self.channels,
                      z_dim=self.z_dim)


class TrainParams(Section):
    epochs: Count
    batch_size: Count
    lr: Positive
    weight_decay: NonNegative
    seed: Natural
    device: Device
    precision: Literal["float32", "bf16"]


class ClassifierParams(TrainParams):
    train_size: int = Field(ge=1, le=MNIST_TRAIN_SIZE, description=f"an int from 1 to {MNIST_TRAIN_SIZE}")


class AEParams(Section):
    prior: Literal["diagonal", "full", "gmm"]
    gmm_components: Count


class VAEParams(Section):
    """The VAE's own settings, which its model file records as they are: a new one is a field here."""

    likelihood: Literal["gaussian", "bernoulli", "continuous_bernoulli"]
    beta: NonNegative
    kl_warmup_epochs: Natural
    iwae_samples: Count


class EvaluateParams(Section):
    seed: Natural
    nll_samples: Count
    samples: int = Field(ge=2, description="an int >= 2")
    quadrature_range: Positive
    quadrature_step: Positive
    quadrature_sds: Positive
    device: Device


class RenderParams(Section):
    seed: Natural
    device: Device


class Params(Section):
    data: DataParams
    model: ModelParams
    train: TrainParams
    ae: AEParams
    vae: VAEParams
    classifier: ClassifierParams
    evaluate: EvaluateParams
    render: RenderParams

    @model_validator(mode="after")
    def _enough_images(self):
        """What the training set is too small for is said before any stage runs."""
        n = self.data.train_size
        if self.train.batch_size > n:
            raise UserError(f"train.batch_size = {self.train.batch_size} is larger than data.train_size = {n}; "
                            "accepted: at most data.train_size")
        if self.ae.prior == "gmm" and self.ae.gmm_components > n:
            raise UserError(f"ae.gmm_components = {self.ae.gmm_components} is more than data.train_size = {n} "
                            "codes to fit them to; accepted: at most data.train_size")
        return self


def load(path: str | Path = "params.yaml") -> Params:
    """params.yaml as DVC reads it: YAML 1.2 (ruamel.yaml), where 1e-3 is a number, not a string."""
    path = Path(path)
    try:
        raw = YAML(typ="safe", pure=True).load(path.read_text())
    except OSError as e:
        raise UserError(f"{path}: cannot read params ({e.strerror})") from None
    except YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UserError(f"{path}: not valid YAML{line}; expected a mapping of sections") from None
    return parse(raw, source=str(path))


def parse(raw, source: str = "params", schema: type[Params] = Params) -> Params:
    """Params from a plain dict (as read from YAML), or a UserError naming the bad key."""
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        # One line, for the first error; an unknown key first, since it may be a misspelt missing one.
        error = min(e.errors(), key=lambda err: err["type"] != "extra_forbidden")
        raise UserError(f"{source}: {explain(error, schema)}") from None


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


def explain(error: dict, schema: type[BaseModel]) -> str:
    """pydantic's error (one of ValidationError.errors()) in params.yaml's words."""
    loc = [part for part in error["loc"] if isinstance(part, str)]  # a list item's index is the list's error
    section = schema
    for part in loc[:-1]:
        section = section.model_fields[part].annotation
    key, names = ".".join(loc), list(section.model_fields)
    if error["type"] == "extra_forbidden":
        if key in RETIRED:
            return f"'{key}' is no longer read: {RETIRED[key]}"
        prefix = key.rpartition(".")[0] + "." if "." in key else ""
        if key in RENAMED:
            new, why = RENAMED[key]
            hint = f"did you mean '{new}'? It was renamed: {why}; "
        else:
            near = difflib.get_close_matches(loc[-1], names, n=1)
            hint = f"did you mean '{prefix}{near[0]}'? " if near else ""
        return f"unknown key '{key}'; {hint}accepted: {', '.join(names)}"
    if error["type"] == "missing":
        return f"missing key '{key}'"
    if error["type"] in ("model_type", "model_attributes_type"):  # a section, or the file, that is no mapping
        fields = (section.model_fields[loc[-1]].annotation if loc else schema).model_fields
        return f"{key or 'the file'} must be a mapping with keys {', '.join(fields)}; got {show(error['input'])}"
    field = section.model_fields[loc[-1]]
    accepted = field.description or " or ".join(
        [", ".join(typing.get_args(field.annotation)[:-1]), typing.get_args(field.annotation)[-1]])
    shown = show(error["input"]) if len(error["loc"]) == len(loc) else "list"  # an item's error is its list's
    return f"{key} = {shown} is not accepted; expected {accepted}"


def show(value) -> str:
    return repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
