"""The README and docs/: a landing page, pages that exist, and result tables that are what `python -m aevae.summary` makes of the runs kept in git."""

import json
import re
import shlex
from pathlib import Path

import pytest

from aevae import UserError, config, summary

from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TABLE = re.compile(r"<!-- table: python -m aevae\.summary (.*?) -->\n(.*?)<!-- end table -->", re.DOTALL)
FILL = "python -m aevae.summary --fill README.md docs/*.md"


def test_the_readme_is_a_landing_page_and_every_page_it_links_exists():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)\)", readme)
    assert {"docs/metrics.md", "docs/experiments.md", "docs/models.md", "docs/reproducibility.md",
            "docs/performance.md", "docs/architecture.md"} <= set(links)
    assert all((ROOT / link).exists() for link in links)
    for page in PAGES:  # images too
        for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", page.read_text()):
            assert (page.parent / image).exists(), f"{page.name}: {image}"


def tables():
    return [(page, args, body) for page in PAGES for args, body in TABLE.findall(page.read_text())]


def test_there_are_generated_tables():
    assert {page.name for page, _, _ in tables()} >= {"README.md", "models.md"}


@pytest.mark.parametrize("page, args, body", tables(), ids=lambda v: v.name if isinstance(v, Path) else None)
def test_each_result_table_is_what_the_summary_makes_of_its_runs(page, args, body):
    ap = summary.parser()
    opts = ap.parse_args(shlex.split(args))
    found = summary.select(summary.load(ROOT / opts.load), opts.where)
    assert body == summary.summarize(found, opts.metrics.split(","), opts.all, opts.model), \
        f"{page.name}: the table is not its runs' summary; regenerate the tables: {FILL}"


def test_the_runs_behind_the_tables_hold_the_committed_default_run():
    """The seed sweep's seed-0 run is the one committed in metrics/: the tables are of the committed results."""
    committed = {kind: json.loads((ROOT / f"metrics/{kind}/evaluate.json").read_text()) for kind in ("ae", "vae")}
    runs = summary.load(ROOT / "docs/results/seeds.json")
    (baseline,) = [r for r in runs if r.params["train.seed"] == 0]
    assert baseline.metrics == committed


def test_the_renamed_params_get_the_errors_docs_models_md_shows(raw_params):
    rows = re.findall(r"^\| `(\w+)\.(\w+)` \| `\w+\.(\w+)` \| `(.+)` \|$", (ROOT / "docs/models.md").read_text(),
                      re.MULTILINE)
    assert {f"{section}.{old}" for section, old, _, _ in rows} == set(config.RENAMED)
    for section, old, new, line in rows:
        raw = {**raw_params, section: {**raw_params[section]}}
        raw[section][old] = raw[section].pop(new)
        with pytest.raises(UserError) as e:
            config.parse(raw, "params.yaml")
        assert str(e.value) == line
