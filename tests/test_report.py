"""`dvc plots show` draws every chart and image with no network, checked in a real browser."""

import configparser
import re
import shutil
import subprocess

import pytest
import yaml

from aevae import report

from helpers import ROOT, env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="no chromium on PATH (.ci/run installs Debian's)")


def test_the_committed_template_is_what_the_generator_writes_and_dvc_uses_it():
    html = report.TEMPLATE.read_text()
    assert "{plot_divs}" in html and "{scripts}" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html), "the template must not load scripts from anywhere"
    assert html == report.render_template(), "regenerate it: python -m aevae.report"
    dvc_config = configparser.ConfigParser()
    dvc_config.read(ROOT / ".dvc/config")
    assert (ROOT / ".dvc" / dvc_config["plots"]["html_template"]).resolve() == report.TEMPLATE


@needs_chromium
@pytest.mark.slow
def test_dvc_plots_show_renders_offline_in_chromium(tmp_path):
    out = tmp_path / "report"
    subprocess.run(["dvc", "plots", "show", "-o", str(out)], cwd=ROOT, env=env(ROOT), check=True, capture_output=True)
    dom = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
            "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
            "--proxy-server=127.0.0.1:9",  # a closed port: any request off this machine fails
            "--virtual-time-budget=20000", "--dump-dom", (out / "index.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    # A Vega view per chart of dvc.yaml, drawn as SVG by the template: the curves with two lines each,
    # the scatter plots with their point.
    charts = [next(iter(c.values())) for c in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
              if isinstance(c, dict)]
    scatters = sum(c.get("template") == "scatter" for c in charts)
    # DVC draws a chart of its own for every file of a stage's `plots:` too (DVCLive's curves, the points)
    per_file = [*ROOT.glob("metrics/*/train/plots/metrics/*/*.tsv"), *ROOT.glob("plots/*/point.json")]
    assert len(per_file) >= 8
    assert dom.count('class="marks"') >= len(charts) + len(per_file) and len(charts) - scatters >= 4 and scatters >= 2
    assert dom.count('aria-roledescription="line mark"') >= 2 * (len(charts) - scatters)
    assert dom.count('aria-roledescription="point"') >= scatters  # the workspace's point in each
    pngs = sorted(p.name for p in (ROOT / "plots/images").glob("*.png"))
    assert pngs, "no committed images"
    for name in pngs:
        static = out / "static" / f"workspace_plots_images_{name}"
        assert static.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="static/{static.name}"' in dom
