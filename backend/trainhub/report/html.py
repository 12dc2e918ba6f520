"""The report as one self-contained HTML file: opens with no network (plotly.js is inlined, about 4.8 MB),
interactive plots (zoom, hover, toggling a series from the legend), the summary table and the jobs
compared key by key.

The page's data is one JSON block, `<script type="application/json" id="trainhub-report">`: the plots
and their series exactly as plots.build made them; a small script draws each with Plotly and records on
its element how many series it drew (`data-drawn`), which is what the browser test checks.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict

from trainhub.report.jobdiff import compare
from trainhub.report.plots import Plot, labels
from trainhub.report.runlog import RunLog, Summary, fmt_duration, fmt_time

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.muted { color: #777; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
#summary td { white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 12px; }
.plot { height: 360px; border: 1px solid #eee; border-radius: 4px; }
tr.diff td { background: #fff4cc; } tr.diff td.key { font-weight: 600; }
.status-completed { color: #2ca02c; } .status-failed { color: #d62728; } .status-interrupted { color: #ff7f0e; }
#jobs.only-diff tr.same { display: none; }
td.val { max-width: 420px; word-break: break-all; font-family: ui-monospace, monospace; }
"""

RENDER = """
(function () {
  const data = JSON.parse(document.getElementById("trainhub-report").textContent);
  for (const plot of data.plots) {
    const el = document.getElementById("plot-" + plot.id);
    const traces = plot.series.map(s => ({
      x: s.x, y: s.y, name: s.label, type: "scatter", mode: s.x.length <= 40 ? "lines+markers" : "lines",
      line: {color: s.color, dash: s.dash ? "dash" : "solid", width: 2}, marker: {size: 5},
      connectgaps: false}));
    const layout = {title: {text: plot.title, font: {size: 15}}, margin: {l: 60, r: 16, t: 40, b: 90},
      xaxis: {title: {text: plot.xlabel}}, yaxis: {title: {text: plot.ylabel}, type: plot.log_y ? "log" : "linear"},
      legend: {orientation: "h", y: -0.3}, showlegend: true};
    Plotly.newPlot(el, traces, layout, {responsive: true, displaylogo: false})
      .then(gd => { el.dataset.drawn = String(gd.data.length); });
  }
  document.getElementById("only-diff").addEventListener("change", e => {
    document.getElementById("jobs").classList.toggle("only-diff", e.target.checked);
  });
})();
"""


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(runs: list[RunLog], summaries: list[Summary], plots: list[Plot], plotly_js: str) -> str:
    names = labels(runs)
    colors = {s.label.removesuffix(" train"): s.color for p in plots for s in p.series}
    data = {"runs": [{"label": n, "path": str(r.path)} for n, r in zip(names, runs, strict=True)],
            "plots": [asdict(p) for p in plots]}
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           f"<title>trainhub report: {html.escape(', '.join(names))}</title>", f"<style>{STYLE}</style>",
           f"<script>{plotly_js}</script>", "</head><body>",
           "<h1>trainhub report</h1>",
           f"<p class='muted'>{len(runs)} run{'s' * (len(runs) != 1)}, written {fmt_time(time.time())}</p>",
           "<h2>Runs</h2>", _summary_table(names, summaries, runs, colors),
           "<h2>Plots</h2>", "<div class='plots'>"]
    for p in plots:
        out.append(f"<div class='plot' id='plot-{p.id}' data-series='{len(p.series)}'></div>")
    out += ["</div>", "<h2>Jobs</h2>",
            "<label><input type='checkbox' id='only-diff'> only the keys that differ</label>",
            _jobs_table(names, runs),
            f"<script type='application/json' id='trainhub-report'>{_json(data)}</script>",
            f"<script>{RENDER}</script>", "</body></html>"]
    return "\n".join(out) + "\n"


def _json(data) -> str:
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def _summary_table(names, summaries: list[Summary], runs: list[RunLog], colors: dict) -> str:
    head = ["run", "backend", "method", "status", "steps", "final loss", "eval loss", "tokens", "tokens/s", "MFU",
            "memory GB", "started", "duration", "folder"]
    rows = []
    for name, s, run in zip(names, summaries, runs, strict=True):
        steps = f"{s.step}/{s.max_steps}" if s.max_steps is not None else str(s.step)
        swatch = f"<span class='swatch' style='background:{colors.get(name, '#ccc')}'></span>"
        cells = [swatch + html.escape(name), s.backend, s.method,
                 f"<span class='status-{s.status}'>{s.status}</span>", steps, _num(s.final_loss, ".4f"),
                 _num(s.eval_loss, ".4f"), f"{s.tokens:,}", _num(s.tokens_per_s, ",.0f"),
                 _num(s.mfu, ".1%"), _num(s.mem_gb, ".2f"), fmt_time(s.started), fmt_duration(s.duration_s),
                 html.escape(str(run.path))]
        kinds = ["", "", "", "", *["num"] * 7, "", "", "path"]
        rows.append("<tr>" + "".join(f"<td class='{k}'>{c}</td>" for k, c in zip(kinds, cells, strict=True)) + "</tr>")
    return ("<table id='summary'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def _jobs_table(names, runs: list[RunLog]) -> str:
    rows = []
    for key in compare([r.job for r in runs]):
        cls = "diff" if key.differs else "same"
        rows.append(f"<tr class='{cls}'><td class='key'>{html.escape(key.key)}</td>"
                    + "".join(f"<td class='val'>{html.escape(v)}</td>" for v in key.values) + "</tr>")
    return ("<table id='jobs'><tr><th>key</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
            + "".join(rows) + "</table>")
