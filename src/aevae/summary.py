"""Results over seeds: mean ± standard deviation, and n, of each group of DVC experiments that differ
only in their seeds, as Markdown tables (a table per group, a row per metric, a column per model).

    python -m aevae.summary [--metrics frechet_samples,kl,...] [--model vae] [--all] [--save F | --load F]
    python -m aevae.summary --fill README.md docs/*.md     # regenerate the tables in these pages

It reads `dvc exp show --json` in the current repository: the commit checked out and its experiments
(for instance a seed sweep, `dvc exp run --queue -S 'train.seed=range(1,3)'`). Any param named
`seed` is a seed; every other param, equal within a group, tells the groups apart. `--model` puts
one model's figures in one table, a row per group (for sweeps). `--save F` keeps the runs' params
and evaluate metrics in a JSON file, `--load F` summarises such a file instead of the repository:
the docs' tables are made so, from files kept in git.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import yaml

from aevae import UserError, run_command
from aevae.files import write_json

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


def experiments(shown: list[dict]) -> list[Experiment]:
    """The committed baseline and every finished experiment in `dvc exp show --json`'s output."""
    found = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":  # what is on disk: the baseline's or an unfinished run's
            continue
        entries = [(baseline.get("name") or baseline["rev"][:7], baseline)]
        entries += [(e.get("name") or e["revs"][0]["rev"][:7], e["revs"][0]) for e in baseline.get("experiments") or []
                    if (e.get("executor") or {}).get("state", "success") == "success"]  # not queued, running, failed
        for i, (name, rev) in enumerate(entries):
            data = rev.get("data") or {}
            metrics = {path.split("/")[1]: m.get("data") or {} for path, m in (data.get("metrics") or {}).items()
                       if path.startswith("metrics/") and path.endswith("/evaluate.json")}
            params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data") or {})
            if metrics and params:
                found.append(Experiment(name, params, metrics, baseline=i == 0))
    return found


def is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def groups(found: list[Experiment]) -> dict[tuple, list[Experiment]]:
    """The runs by their params less the seeds and the settings that change no byte (`no_bytes`);
    within a group, a seed combination counts once, and a second run of it is said on stderr."""
    out = defaultdict(dict)
    for run in found:
        key = tuple(sorted((k, v) for k, v in run.params.items() if not is_seed(k) and not no_bytes(k)))
        seeds = tuple(sorted((k, v) for k, v in run.params.items() if is_seed(k)))
        if seeds in out[key]:
            print(f"summary: {run.name} has the params and seeds of {out[key][seeds].name}: counted once, "
                  f"as {out[key][seeds].name}", file=sys.stderr)
            continue
        out[key][seeds] = run
    return {key: list(by_seed.values()) for key, by_seed in out.items()}


def mean_sd(values: list[float]) -> str:
    """mean ± sample standard deviation, both rounded to the standard deviation's second significant
    digit; a NaN or an infinity is said, not averaged."""
    bad = sum(not math.isfinite(v) for v in values)
    if bad:
        return f"non-finite in {bad} of {len(values)}"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4g}"
    sd = statistics.stdev(values)
    if sd == 0:
        return f"{mean:.4g} ± 0"
    digits = 1 - math.floor(math.log10(sd))  # decimals to keep; below 0, tens or hundreds
    return f"{round(mean, digits):.{max(0, digits)}f} ± {round(sd, digits):.{max(0, digits)}f}"


def cell(group: list[Experiment], model: str, metric: str) -> str:
    values = [run.metrics[model][metric] for run in group if metric in run.metrics.get(model, {})]
    return mean_sd(values) if values and len(values) == len(group) else "–"


def sweep_table(by_group: dict[tuple, list[Experiment]], model: str, metrics: list[str]) -> str:
    """One model's figures, a row per group (its params that differ between groups) and a column per metric."""
    varied = varied_keys(by_group)
    lines = ["| " + " | ".join([*varied, "n", *metrics]) + " |", "|" + " ---: |" * (len(varied) + 1 + len(metrics))]
    for key, group in sorted(by_group.items(), key=lambda item: [order(dict(item[0]).get(k)) for k in varied]):
        params = dict(key)
        lines.append("| " + " | ".join([*(str(params.get(k)) for k in varied), str(len(group)),
                                         *(cell(group, model, m) for m in metrics)]) + " |")
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
    for metric in metrics:
        cells = [cell(group, m, metric) for m in models]
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


def exp_show() -> list[dict]:
    # DVC from this interpreter's environment, which the project's requirements install it into.
    run = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        raise UserError(f"'dvc exp show --json' failed: {run.stderr.strip().splitlines()[-1] if run.stderr else ''}; "
                        "run this in a DVC repository with at least one commit")
    return json.loads(run.stdout)


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
        found = select(load(opts.load) if opts.load else experiments(exp_show()), opts.where)
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
    found = select(load(args.load) if args.load else experiments(exp_show()), args.where)
    if args.save:
        write_json(args.save, [r._asdict() for r in found])
    sys.stdout.write(summarize(found, args.metrics.split(","), args.all, args.model))


if __name__ == "__main__":
    run_command(main)
