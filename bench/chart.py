"""Draw the performance benchmark's JSON as a PNG (``python -m bench.chart``).

Rendered by headless Chromium with the Plotly.js the `plotly` package ships, so no plotting
library beyond what the project already has is needed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def page(perf: dict) -> str:
    import plotly

    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    m = perf["p1"]["median_s"]
    names = ["Ray Tune as usually written", "Ray Tune tuned", "lrsearch (REST to stored)", "bare loop / 2 (floor)"]
    values = [m["tune_naive"], m["tune_tuned"], m["lrsearch"], perf["p1"]["floor_s"]]
    data = [{"type": "bar", "orientation": "h", "y": names, "x": values,
             "text": [f"{v:.2f} s" for v in values], "textposition": "outside",
             "marker": {"color": ["#9aa5b1", "#6b7785", "#4f46e5", "#c7d2fe"]}}]
    layout = {"title": {"text": "P1: 16 trials x 8 epochs of mlp-digits, concurrency 2 (wall s, log scale)"},
              "xaxis": {"type": "log", "title": {"text": "seconds"},
                        "range": [math.log10(min(values) / 1.5), math.log10(max(values) * 3)]}, "margin": {"l": 230, "r": 40, "t": 60, "b": 50},
              "width": 900, "height": 360, "font": {"family": "sans-serif", "size": 14}}
    return (f"<html><head><script src='file://{plotly_js}'></script></head><body style='margin:0'>"
            f"<div id='c'></div><script>Plotly.newPlot('c', {json.dumps(data)}, {json.dumps(layout)}, "
            "{staticPlot: true}).then(() => document.title = 'done');</script></body></html>")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--perf", default=str(REPO / "bench" / "results" / "perf.json"))
    parser.add_argument("--out", default=str(REPO / "docs" / "bench-perf.png"))
    args = parser.parse_args()
    perf = json.loads(Path(args.perf).read_text())
    html = Path(tempfile.mkdtemp()) / "chart.html"
    html.write_text(page(perf))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=os.environ.get("LRSEARCH_CHROMIUM", "/usr/bin/chromium"),
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking", "--allow-file-access-from-files"])
        tab = browser.new_page(viewport={"width": 900, "height": 360})
        tab.goto(html.as_uri())
        tab.wait_for_function("document.title === 'done'", timeout=30_000)
        tab.screenshot(path=args.out)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
