"""An HTML template for `dvc plots show/diff` that draws its charts offline.

DVC's own page loads Vega, Vega-Lite and Vega-Embed from a CDN, so without internet its charts
stay blank. This template carries the three libraries inline, bundled by vl-convert-python, and
.dvc/config points DVC at it (plots.html_template). Regenerate it after upgrading vl-convert:

    python -m aevae.report
"""

from __future__ import annotations

from pathlib import Path

from aevae import write_bytes

TEMPLATE = Path(__file__).resolve().parents[2] / ".dvc/plots/offline.html"

# DVC fills {plot_divs}; leaving out its {scripts} placeholder keeps its CDN <script> tags out.
PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>AE vs VAE on MNIST: DVC plots</title>
<script>{bundle}</script>
<script>
  // SVG rather than canvas: sharp at any zoom, and the marks are in the page for tests to find.
  const embed = window.vegaEmbed;
  window.vegaEmbed = (el, spec, opts) => embed(el, spec, {{renderer: "svg", ...opts}});
</script>
<style>
  body {{ font-family: sans-serif; margin: 1em 2em; }}
  table {{ border-spacing: 15px; }}
  img {{ max-width: 100%; }}
  /* DVC lays the revisions' images out in one unbreakable row (white-space: nowrap), wider than the
     window from two revisions on: share the row's width between them instead. */
  div[id$="_png"] {{ display: flex; flex-wrap: wrap; white-space: normal !important; }}
  div[id$="_png"] > p {{ flex-basis: 100%; }}
  div[id$="_png"] > div {{ flex: 1 1 0; min-width: 0; }}
</style>
</head>
<body>
{{plot_divs}}
</body>
</html>
"""


def render_template() -> str:
    import vl_convert  # only needed to regenerate the committed template

    bundle = vl_convert.javascript_bundle()
    if "</script" in bundle:
        raise ValueError("the Vega bundle contains '</script' and cannot be inlined")
    return PAGE.format(bundle=bundle)


if __name__ == "__main__":
    write_bytes(TEMPLATE, render_template().encode())
    print(f"wrote {TEMPLATE}")
