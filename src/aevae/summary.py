"""Results over seeds: mean ± standard deviation, and n, of each group of DVC experiments that differ
only in their seeds, as Markdown tables (a table per group, a row per metric, a column per model).

    python -m aevae.summary [--metrics frechet_samples,kl,...] [--model vae] [--all] [--save F | --load F]
    python -m aevae.summary --fill README.md docs/*.md     # regenerate the tables in these pages

It lists the commit checked out and its experiments with `dvc.api.exp_show()` (for instance a seed
sweep, `dvc exp run --queue -S 'train.seed=range(1,3)'`), and reads each run's params and evaluate
metrics with `dvc.api.params_show` and `dvc.api.metrics_show`, as the files hold them. Any param named
`seed` is a seed; every other param, equal within a group, tells the groups apart; pandas groups the
runs and takes the means and sds. `--model` puts one model's figures in one table, a row per group (for
sweeps). `--save F` keeps the runs' params and evaluate metrics in a JSON file, `--load F` summarises
such a file instead of the repository: the docs' tables are made so, from files kept in git.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

import dvc.api
import pandas as pd
import yaml
from dvc.exceptions import DvcException

from aevae import UserError, run_command, write_json

HEADLINE = ["frechet_samples", "confident_samples", "mse", "kl", "active_units", "probe_accuracy", "nll_is_gaussian"]
SWEEP = "dvc exp run --queue -S 'train.seed=range(1,3)' && dvc queue start"


class Experiment(NamedTuple):
    name: str
    params: dict[str, object]  # flattened: "vae.beta" -> 1.0
    metrics: dict[str, dict[str, float]]  # model -> metric -> value, from metrics/<model>/evaluate.json
    baseline: bool = False  # the commit's own run, with params.yaml as committed


def no_bytes(key: str) -> bool:
    """Settings that say where and how fast a run ran, not what it computed: `*.device` (auto and cpu
    are one device on a CPU) and `threads` (a param in older runs; the pins give the same bytes at
    any count). Groups are not split on them."""
    return key == "threads" or key.rsplit(".", 1)[-1] == "device"


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def experiments() -> list[Experiment]:
    """The commit checked out and its finished experiments (not queued, running or failed), each with its
    params and every model's metrics/<model>/evaluate.json."""
    try:
        rows = dvc.api.exp_show()
    except DvcException as e:
        raise UserError(f"dvc.api.exp_show() failed ({e}); run this in a DVC repository with at least one commit"
                        ) from None
    models = sorted(path.parent.name for path in Path("metrics").glob("*/evaluate.json"))
    found = []
    for row in rows:
        if row["rev"] == "workspace" or row["State"] not in (None, "Success"):
            continue
        rev = row["Experiment"] or row["rev"]
        metrics = {}
        for model in models:
            try:
                metrics[model] = dvc.api.metrics_show(f"metrics/{model}/evaluate.json", rev=rev)
            except DvcException:  # a run from before this model was evaluated
                continue
        params = flatten(dvc.api.params_show(rev=rev))
        if metrics and params:
            found.append(Experiment(rev, params, metrics, baseline=row["typ"] == "baseline"))
    return found


def is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def groups(found: list[Experiment]) -> dict[tuple, list[Experiment]]:
    """The runs by their params less the seeds and the settings that change no byte (`no_bytes`);
    within a group, a seed combination counts once, and a second run of it is said on stderr."""
    runs = pd.DataFrame({
        "run": found,
        "group": [tuple(sorted((k, v) for k, v in r.params.items() if not is_seed(k) and not no_bytes(k))) for r in found],
        "seeds": [tuple(sorted((k, v) for k, v in r.params.items() if is_seed(k))) for r in found],
    })
    again = runs.duplicated(["group", "seeds"])
    for i in runs.index[again]:
        first = runs.run[(runs.group == runs.group[i]) & (runs.seeds == runs.seeds[i])].iloc[0]
        print(f"summary: {runs.run[i].name} has the params and seeds of {first.name}: counted once, as {first.name}",
              file=sys.stderr)
    runs = runs[~again]
    return {key: list(group.run) for key, group in runs.groupby("group", sort=False)}


def figures(group: list[Experiment]) -> pd.DataFrame:
    """A group's metrics: a row per run, a column per (model, metric); None where a run lacks one."""
    columns = sorted({(model, metric) for run in group for model, metrics in run.metrics.items() for metric in metrics})
    return pd.DataFrame([[run.metrics.get(model, {}).get(metric) for model, metric in columns] for run in group],
                        columns=pd.MultiIndex.from_tuples(columns), dtype=object)


def mean_sd(values: pd.Series) -> str:
    """mean ± sample standard deviation, both rounded to the standard deviation's second significant
    digit; a NaN or an infinity is said, not averaged."""
    values = pd.Series(values, dtype=float)
    bad = int((~values.map(math.isfinite)).sum())
    if bad:
        return f"non-finite in {bad} of {len(values)}"
    mean = values.mean()
    if len(values) < 2:
        return f"{mean:.4g}"
    sd = values.std()
    if sd == 0:
        return f"{mean:.4g} ± 0"
    digits = 1 - math.floor(math.log10(sd))  # decimals to keep; below 0, tens or hundreds
    return f"{round(mean, digits):.{max(0, digits)}f} ± {round(sd, digits):.{max(0, digits)}f}"


def cell(table: pd.DataFrame, model: str, metric: str) -> str:
    """The mean ± sd of a model's metric over a group's runs (`figures`), or – where a run lacks it."""
    if (model, metric) not in table or any(value is None for value in table[(model, metric)]):
        return "–"
    return mean_sd(table[(model, metric)])


def sweep_table(by_group: dict[tuple, list[Experiment]], model: str, metrics: list[str]) -> str:
    """One model's figures, a row per group (its params that differ between groups) and a column per metric."""
    varied = varied_keys(by_group)
    lines = ["| " + " | ".join([*varied, "n", *metrics]) + " |", "|" + " ---: |" * (len(varied) + 1 + len(metrics))]
    for key, group in sorted(by_group.items(), key=lambda item: [order(dict(item[0]).get(k)) for k in varied]):
        params, table = dict(key), figures(group)
        lines.append("| " + " | ".join([*(str(params.get(k)) for k in varied), str(len(group)),
                                         *(cell(table, model, m) for m in metrics)]) + " |")
    return "\n".join(lines) + "\n"


def order(value) -> tuple:
    """A sort key under which numbers sort as numbers (2 before 10), ahead of everything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value, "")
    return (1, 0, str(value))


def varied_keys(by_group: dict[tuple, list[Experiment]]) -> list[str]:
    keys = sorted({k for key in by_group for k, _ in key})
    return [k for k in keys if len({dict(key).get(k) for key in by_group}) > 1]


def table(group: list[Experiment], metrics: list[str]) -> str:
    models = sorted({m for run in group for m in run.metrics})
    lines = [f"| metric (n = {len(group)}) | " + " | ".join(m.upper() for m in models) + " |",
             "| --- |" + " ---: |" * len(models)]
    table = figures(group)
    for metric in metrics:
        cells = [cell(table, m, metric) for m in models]
        if any(c != "–" for c in cells):
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(found: list[Experiment], metrics: list[str], all_groups: bool = False, model: str | None = None) -> str:
    if not found:
        raise UserError(f"no finished runs with metrics/<model>/evaluate.json here; run the pipeline ('dvc repro'), "
                        f"then a seed sweep: {SWEEP}")
    by_group = groups(found)
    if not all_groups:  # the groups of more than one seed: those with an error bar
        by_group = {k: g for k, g in by_group.items() if len(g) > 1} or by_group
    if model:
        return sweep_table(by_group, model, metrics)
    varied = set(varied_keys(by_group))
    parts = []
    for key, group in by_group.items():
        label = ", ".join(f"{k}={v}" for k, v in key if k in varied) or (
            "params.yaml as committed" if any(run.baseline for run in group) else "the same params")
        seeds = sorted({k for run in group for k in run.params if is_seed(k)
                        and len({r.params[k] for r in group}) > 1})
        over = f"; over {', '.join(seeds)}" if seeds else ""
        parts.append(f"**{label}** ({', '.join(run.name for run in group)}{over})\n\n{table(group, metrics)}")
    ignored = sorted({k for run in found for k in run.params if no_bytes(k)
                      and len({str(r.params.get(k)) for r in found}) > 1})
    if ignored:
        parts.append(f"(Not told apart by {', '.join(ignored)}: where a run ran, not what it computed.)")
    return "\n\n".join(parts) + "\n"


def select(found: list[Experiment], where: list[str]) -> list[Experiment]:
    """The runs whose params match every KEY=VALUE of `where` (values compared as YAML reads them)."""
    for condition in where:
        key, sep, value = condition.partition("=")
        if not sep:
            raise UserError(f"--where {condition}: expected KEY=VALUE, e.g. vae.beta=1.0")
        if found and not any(key in r.params for r in found):
            raise UserError(f"--where {condition}: no run has a param '{key}'; params look like train.seed")
        want = yaml.safe_load(value)
        want = tuple(want) if isinstance(want, list) else want  # as the params hold lists
        found = [r for r in found if r.params.get(key) == want]
    return found


def load(path: str) -> list[Experiment]:
    try:
        saved = json.loads(Path(path).read_text())
        if not isinstance(saved, list):
            raise ValueError("not a list of runs")
        return [Experiment(r["name"], {k: tuple(v) if isinstance(v, list) else v for k, v in r["params"].items()},
                    r["metrics"], r.get("baseline", False)) for r in saved]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a file that --save wrote ({e}); make one with "
                        "python -m aevae.summary --save FILE") from None


# A generated table in a Markdown page: the command's options, then its output.
TABLE = re.compile(r"(<!-- table: python -m aevae\.summary (.*?) -->\n)(.*?)(<!-- end table -->)", re.DOTALL)


def fill(page: Path) -> None:
    """Rewrite every generated table in `page` from the options in its marker."""
    def table_for(match):
        opts = parser().parse_args(shlex.split(match[2]))
        found = select(load(opts.load) if opts.load else experiments(), opts.where)
        return match[1] + summarize(found, opts.metrics.split(","), opts.all, opts.model) + match[4]

    page.write_text(TABLE.sub(table_for, page.read_text()))


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m aevae.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default=",".join(HEADLINE), help="comma-separated keys of evaluate.json")
    ap.add_argument("--model", help="one table of this model's figures, a row per group (ae, vae, ...)")
    ap.add_argument("--all", action="store_true", help="every group, also those of a single run")
    ap.add_argument("--where", metavar="KEY=VALUE", action="append", default=[],
                    help="only the runs whose param KEY has this value, e.g. vae.beta=1.0 (repeatable)")
    ap.add_argument("--save", metavar="FILE", help="also keep the runs' params and metrics in FILE (JSON)")
    ap.add_argument("--load", metavar="FILE", help="summarise FILE, as --save wrote it, not the repository")
    ap.add_argument("--fill", metavar="PAGE", nargs="+", type=Path,
                    help="rewrite the generated tables of these Markdown pages (<!-- table: ... --> markers) instead")
    return ap


def main():
    args = parser().parse_args()
    if args.fill:
        for page in args.fill:
            fill(page)
        return
    found = select(load(args.load) if args.load else experiments(), args.where)
    if args.save:
        write_json(args.save, [r._asdict() for r in found])
    sys.stdout.write(summarize(found, args.metrics.split(","), args.all, args.model))


if __name__ == "__main__":
    run_command(main)
