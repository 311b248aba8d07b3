"""Results over seeds: mean ± standard deviation, and n, of each group of DVC experiments that differ
only in their seeds, as Markdown tables (a table per group, a row per metric, a column per model).

    python -m aevae.summary [--metrics frechet_samples,kl,...] [--all]

It reads `dvc exp show --json` in the current repository: the commit checked out and its experiments
(for instance a seed sweep, `dvc exp run --queue -S 'train.seed=range(1,3)'`). Any param named
`seed` is a seed; every other param, equal within a group, tells the groups apart.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from typing import NamedTuple

from aevae import UserError, run_stage

HEADLINE = ["frechet_samples", "confident_samples", "mse", "kl", "active_units", "probe_accuracy", "nll_is_gaussian"]
SWEEP = "dvc exp run --queue -S 'train.seed=range(1,3)' && dvc queue start"


class Run(NamedTuple):
    name: str
    params: dict[str, object]  # flattened: "vae.beta" -> 1.0
    metrics: dict[str, dict[str, float]]  # model -> metric -> value, from metrics/<model>/evaluate.json


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def runs(shown: list[dict]) -> list[Run]:
    """The committed baseline and every finished experiment in `dvc exp show --json`'s output."""
    found = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":  # what is on disk: the baseline's or an unfinished run's
            continue
        entries = [(baseline.get("name") or baseline["rev"][:7], baseline)]
        entries += [(e.get("name") or e["revs"][0]["rev"][:7], e["revs"][0]) for e in baseline.get("experiments") or []]
        for name, rev in entries:
            data = rev.get("data") or {}
            metrics = {path.split("/")[1]: m.get("data") or {} for path, m in (data.get("metrics") or {}).items()
                       if path.startswith("metrics/") and path.endswith("/evaluate.json")}
            params = flatten((data.get("params") or {}).get("params.yaml", {}).get("data") or {})
            if metrics and params:
                found.append(Run(name, params, metrics))
    return found


def is_seed(key: str) -> bool:
    return key.rsplit(".", 1)[-1] == "seed"


def groups(found: list[Run]) -> dict[tuple, list[Run]]:
    """The runs by their params less the seeds; within a group, a seed combination counts once."""
    out = defaultdict(dict)
    for run in found:
        key = tuple(sorted((k, v) for k, v in run.params.items() if not is_seed(k)))
        seeds = tuple(sorted((k, v) for k, v in run.params.items() if is_seed(k)))
        out[key].setdefault(seeds, run)
    return {key: list(by_seed.values()) for key, by_seed in out.items()}


def mean_sd(values: list[float]) -> str:
    """mean ± sample standard deviation, both rounded to the standard deviation's second significant digit."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4g}"
    sd = statistics.stdev(values)
    if sd == 0:
        return f"{mean:.4g} ± 0"
    decimals = max(0, 1 - math.floor(math.log10(sd)))
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def table(group: list[Run], metrics: list[str]) -> str:
    models = sorted({m for run in group for m in run.metrics})
    lines = [f"| metric (n = {len(group)}) | " + " | ".join(m.upper() for m in models) + " |",
             "| --- |" + " ---: |" * len(models)]
    for metric in metrics:
        cells = []
        for m in models:
            values = [run.metrics[m][metric] for run in group if metric in run.metrics.get(m, {})]
            cells.append(mean_sd(values) if len(values) == len(group) else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(shown: list[dict], metrics: list[str], all_groups: bool = False) -> str:
    found = runs(shown)
    if not found:
        raise UserError(f"no finished runs with metrics/<model>/evaluate.json here; run the pipeline ('dvc repro'), "
                        f"then a seed sweep: {SWEEP}")
    by_group = groups(found)
    if not all_groups:  # the groups of more than one seed: those with an error bar
        by_group = {k: g for k, g in by_group.items() if len(g) > 1} or by_group
    varied = {k for key in by_group for k, v in key if any(dict(other).get(k) != v for other in by_group)}
    parts = []
    for key, group in by_group.items():
        label = ", ".join(f"{k}={v}" for k, v in key if k in varied) or "params.yaml as committed"
        seeds = sorted({k for run in group for k in run.params if is_seed(k)
                        and len({r.params[k] for r in group}) > 1})
        over = f"; over {', '.join(seeds)}" if seeds else ""
        parts.append(f"**{label}** ({', '.join(run.name for run in group)}{over})\n\n{table(group, metrics)}")
    return "\n\n".join(parts) + "\n"


def exp_show() -> list[dict]:
    run = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if run.returncode != 0:
        raise UserError(f"'dvc exp show --json' failed: {run.stderr.strip().splitlines()[-1] if run.stderr else ''}; "
                        "run this in a DVC repository with at least one commit")
    return json.loads(run.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--metrics", default=",".join(HEADLINE), help="comma-separated keys of evaluate.json")
    ap.add_argument("--all", action="store_true", help="every group, also those of a single run")
    args = ap.parse_args()
    sys.stdout.write(summarize(exp_show(), args.metrics.split(","), args.all))


if __name__ == "__main__":
    run_stage(main)
