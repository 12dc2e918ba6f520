"""Looking back at runs from their metric logs: `trainhub runs` (a table of run folders) and
`trainhub report` (one self-contained HTML page comparing runs, and the same plots as PNGs).

runlog.py reads a run folder; plots.py turns runs into plots (plain data); html.py and png.py draw them;
jobdiff.py lines the resolved jobs up key by key. Only the metric log and the standard library are needed
to read runs; the page inlines plotly.js and the PNGs use matplotlib (the `report` extra).
"""

from __future__ import annotations

from pathlib import Path

from trainhub.report.runlog import NotARun, RunLog, find_runs, load, summarize

__all__ = ["NotARun", "ReportError", "RunLog", "find_runs", "load", "summarize", "write_report"]


class ReportError(Exception):
    pass


def write_report(paths: list[Path], out: Path | None, png_dir: Path | None) -> tuple[list[RunLog], list[Path]]:
    """Read the runs, write the HTML page to `out` and the PNGs to `png_dir` (either may be None).
    Returns the runs and the files written."""
    from trainhub.report import plots as plots_mod

    runs = [load(p) for p in paths]
    empty = [str(r.path) for r in runs if not r.rows]
    if empty:
        raise ReportError(f"no metric rows yet in {', '.join(empty)}")
    plots = plots_mod.build(runs)
    written = []
    if out is not None:
        from trainhub.report.html import render

        try:
            from plotly.offline import get_plotlyjs
        except ImportError:
            raise ReportError("the HTML report inlines plotly.js: pip install 'trainhub[report]'") from None
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(runs, [summarize(r) for r in runs], plots, get_plotlyjs()), encoding="utf-8")
        written.append(out)
    if png_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise ReportError("--png draws with matplotlib: pip install 'trainhub[report]'") from None
        from trainhub.report.png import write_pngs

        written += write_pngs(plots, png_dir)
    return runs, written
