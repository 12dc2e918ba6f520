"""`trainhub runs` and `trainhub report` on real tiny runs: one completed, one failed (a non-finite loss
injected at step 4 with train.on_nonfinite: stop), with a different learning rate."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job

WIDE = {"COLUMNS": "300"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("runs")
    done = tiny_pretrain_job(tmp, name="done", output_dir=str(tmp / "runs" / "done"),
                             train={"max_steps": 8, "eval_every": 4, "eval_batches": 1})
    failed = tiny_pretrain_job(tmp, name="broken", output_dir=str(tmp / "runs" / "broken"), optim={"lr": 2e-2},
                               train={"max_steps": 8, "on_nonfinite": "stop"})
    first = run_cli("train", "-c", str(write_job(tmp / "done.yaml", done)))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("train", "-c", str(write_job(tmp / "broken.yaml", failed)),
                     env={"TRAINHUB_INJECT_NONFINITE": "4"})
    assert second.returncode == 1, second.stdout + second.stderr
    return tmp / "runs"


def _table(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]  # the header's bars are bold
        if cells and cells[0]:
            out[cells[0]] = cells[1:]
    return out


def test_runs_lists_each_run_folder(two_runs):
    done = run_cli("runs", str(two_runs), env=WIDE)
    assert done.returncode == 0, done.stderr
    table = _table(done.stdout)
    assert set(table) == {"run", "done", "broken"}
    assert table["run"] == ["name", "backend", "method", "status", "steps", "final loss", "tokens/s", "MFU",
                            "started", "duration"]
    end = rows(two_runs / "done", "end")[-1]
    name, backend, method, status, steps, loss, tps, mfu, started, duration = table["done"]
    assert (name, backend, method, status, steps) == ("done", "native", "pretrain", "completed", "8/8")
    assert loss == f"{end['final_loss']:.4f}" and mfu == "-" and float(tps.replace(",", "")) > 0
    assert started.startswith("20") and duration.endswith("s")
    assert table["broken"][:5] == ["broken", "native", "pretrain", "failed", "4/8"]
    assert run_cli("runs", str(two_runs / "nothing-here"), env=WIDE).returncode == 1


class _Page(HTMLParser):
    """The report's data block, each plot element's attributes and the job table's rows."""

    def __init__(self):
        super().__init__()
        self.data, self.plots, self.job_rows, self.external = None, {}, [], []
        self._in_data = False
        self._chunks: list[str] = []
        self._row: list | None = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "img", "iframe") and (a.get("src") or a.get("href")):
            self.external.append(a.get("src") or a.get("href"))
        if tag == "script" and a.get("id") == "trainhub-report":
            self._in_data = True
        if tag == "div" and "plot" in (a.get("class") or "").split():
            self.plots[a["id"]] = a
        if tag == "tr" and a.get("class") in ("diff", "same"):
            self._row = [a["class"]]
        if tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "script" and self._in_data:
            self.data, self._in_data = json.loads("".join(self._chunks)), False
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.job_rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._in_data:
            self._chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _report(two_runs: Path, tmp_path: Path) -> tuple[Path, Path]:
    out, png = tmp_path / "report.html", tmp_path / "png"
    done = run_cli("report", str(two_runs / "done"), str(two_runs / "broken" / "metrics.jsonl"), "-o", str(out),
                   "--png", str(png), env=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, png


def test_report_page_holds_every_plot_with_a_series_per_run(two_runs, tmp_path):
    out, png = _report(two_runs, tmp_path)
    text = out.read_text()
    page = _Page()
    page.feed(text)
    assert page.external == []  # nothing to fetch: the page opens offline
    plots = {p["id"]: p for p in page.data["plots"]}
    assert list(plots) == ["loss_step", "loss_tokens", "loss_time", "lr", "tokens_per_s", "mem_gb", "grad_norm"]
    # no MFU plot: null on CPU in both runs; no RL plots: pretraining
    for pid, plot in plots.items():
        assert page.plots[f"plot-{pid}"]["data-series"] == str(len(plot["series"]))
    labels = [s["label"] for s in plots["loss_step"]["series"]]
    assert labels == ["done (native) train", "done (native) eval", "broken (native) train"]
    assert [len(plots[p]["series"]) for p in ("lr", "tokens_per_s", "mem_gb", "grad_norm")] == [2, 2, 2, 2]
    # the series are the metric log's numbers
    done_train = rows(two_runs / "done", "train")
    series = plots["loss_step"]["series"]
    assert series[0]["x"] == [r["step"] for r in done_train] and series[0]["y"] == [r["loss"] for r in done_train]
    assert series[1]["x"] == [r["step"] for r in rows(two_runs / "done", "eval")] == [4, 8]
    assert series[1]["dash"] and series[0]["color"] == series[1]["color"] != series[2]["color"]
    broken_train = rows(two_runs / "broken", "train")
    assert series[2]["y"] == [r["loss"] for r in broken_train] and series[2]["y"][-1] is None  # the NaN step
    assert plots["loss_tokens"]["series"][0]["x"] == [r["tokens"] for r in done_train]
    times = plots["loss_time"]["series"][0]["x"]
    assert times == sorted(times) and times[-1] < rows(two_runs / "done", "end")[-1]["wall_s"]
    # the jobs side by side, the differences marked
    differs = {r[1]: r[2:] for r in page.job_rows if r[0] == "diff"}
    same = {r[1]: r[2:] for r in page.job_rows if r[0] == "same"}
    assert {"name", "output_dir", "optim.lr", "train.on_nonfinite", "train.eval_every"} <= set(differs)
    assert differs["optim.lr"] == ["0.01", "0.02"]
    assert "seed" in same and "model.init.hidden_size" in same
    # the PNGs: one per plot, each a real picture in the runs' colours
    from PIL import Image

    for pid in plots:
        image = Image.open(png / f"{pid}.png").convert("RGB")
        assert image.size == (840, 480)
        colours = image.getcolors(maxcolors=1 << 20)
        assert len(colours) > 50
        assert any(c == (31, 119, 180) for _, c in colours), pid  # the first run's line


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt-get install chromium)")
def test_report_draws_every_series_in_a_headless_browser(two_runs, tmp_path):
    out, _ = _report(two_runs, tmp_path)
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=20000", "--window-size=1400,2600"]
    dom = subprocess.run([*browser, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = _DrawnPlots()
    drawn.feed(dom.stdout)
    page = _Page()
    page.feed(out.read_text())
    expected = {f"plot-{p['id']}": len(p["series"]) for p in page.data["plots"]}
    assert drawn.drawn == {k: str(v) for k, v in expected.items()}  # what Plotly says it drew
    assert drawn.traces == expected  # the scatter layers in the page's SVG
    shot = tmp_path / "report.png"  # the test's artifact: a picture of the page
    done = subprocess.run([*browser, f"--screenshot={shot}", out.as_uri()], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    print(f"screenshot: {shot}")


class _DrawnPlots(HTMLParser):
    """In the DOM after scripts ran: each plot's data-drawn and the number of scatter traces under it."""

    def __init__(self):
        super().__init__()
        self.drawn, self.traces = {}, {}
        self._stack: list[str | None] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "plot" in (a.get("class") or "").split():
            self.drawn[a["id"]] = a.get("data-drawn")
            self.traces[a["id"]] = 0
            self._stack.append(a["id"])
        elif tag == "div":
            self._stack.append(None)
        classes = (a.get("class") or "").split()
        if tag == "g" and "trace" in classes and "scatter" in classes:
            owner = next((p for p in reversed(self._stack) if p), None)
            if owner:
                self.traces[owner] += 1

    def handle_endtag(self, tag):
        if tag == "div" and self._stack:
            self._stack.pop()
