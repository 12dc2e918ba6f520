"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

Against the real `trainhub server` process: the token typed into the page, a bad job's errors shown
inline, a job submitted through the form, seen running with its loss plot growing, and stopped.
Skipped where Playwright or a Chromium binary is missing (pip install playwright; apt install chromium).
"""

from __future__ import annotations

import shutil
import signal
import time

import pytest
import yaml

from tests.conftest import rows
from tests.integration.test_server import _free_port, _job, _start_server

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary")]


def _points(page) -> int:
    """Points of the loss-by-step plot's train series, as drawn."""
    return int(page.eval_on_selector('svg[data-plot="loss_step"] polyline', "el => +el.dataset.points"))


def test_submit_watch_and_stop_in_the_browser(tmp_path):
    port = _free_port()
    server = _start_server(tmp_path, port)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#token", "tok")
            page.dispatch_event("#token", "change")

            bad = _job(tmp_path, "bad", 3)
            bad["optim"]["lrr"] = 1
            page.fill("#text", yaml.safe_dump(bad, sort_keys=False))
            page.click("#send")
            page.wait_for_function("document.getElementById('submit-errors').textContent.includes('unknown key')")
            assert "optim.lrr" in page.text_content("#submit-errors")

            page.fill("#text", yaml.safe_dump(_job(tmp_path, "web", 400), sort_keys=False))
            page.click("#send")
            page.wait_for_selector("#detail-status.status-running", timeout=180_000)
            page.wait_for_selector('svg[data-plot="loss_step"] polyline', timeout=180_000)
            first = _points(page)
            deadline = time.time() + 120
            while _points(page) <= first:  # the plot follows the run
                assert time.time() < deadline, "the loss plot did not update"
                page.wait_for_timeout(300)
            page.click("#stop")
            page.wait_for_selector("#detail-status.status-interrupted", timeout=180_000)
            assert not page.is_disabled("#resume")
            browser.close()
        end = rows(tmp_path / "runs" / "web", "end")[-1]
        assert end["status"] == "interrupted" and end["step"] < 400
        assert any((tmp_path / "runs" / "web" / "checkpoints").iterdir())
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
