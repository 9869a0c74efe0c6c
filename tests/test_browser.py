"""A real browser: JupyterLab on 127.0.0.1, port_kernel.ipynb opened in headless Chromium (Playwright,
Debian's chromium binary), run all cells, click Profile, and find the comparison table and a figure in
the rendered page. Saves a screenshot under $WORKBENCH_ARTIFACTS (default: out/test-artifacts/).

Needs chromium (`apt-get install chromium`), playwright and jupyterlab (pip); .ci/run installs them.
Without them the test skips with a warning that says what is missing.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from helpers import REPO, shared_cache

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WORKBENCH_CHROMIUM)"
    for module, package in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab"),
                            ("ipywidgets", "ipywidgets>=8")):
        try:
            __import__(module)
        except ImportError:
            return f"python package {package} is not installed (pip install {package})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"jupyter lab did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a temporary root that holds a copy of port_kernel.ipynb; yields its URL."""
    why = _missing()
    if why:
        warnings.warn(f"BROWSER TEST SKIPPED: {why}", stacklevel=1)
        pytest.skip(f"browser test cannot run here: {why}")
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "port_kernel.ipynb", root / "port_kernel.ipynb")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), WORKBENCH_STORE=str(tmp_path / "store.db"),
               WORKBENCH_CACHE=shared_cache(), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
             f"--ServerApp.root_dir={root}", "--IdentityProvider.token=", "--ServerApp.password=",
             "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_server(url, proc, log)
        yield url
    finally:
        proc.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


KERNEL_IDLE = """() => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const kernel = widget && widget.sessionContext && widget.sessionContext.session
        && widget.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}"""


def _start_kernel(page, timeout: float = 90) -> None:
    """Wait for the notebook's kernel; answer JupyterLab's kernel dialog if it asks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select = page.locator(".jp-Dialog button", has_text="Select")
        if select.count():
            select.first.click()
        if page.evaluate(KERNEL_IDLE):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the notebook's kernel was not idle within {timeout} s")


def test_profile_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    artifacts = Path(os.environ.get("WORKBENCH_ARTIFACTS") or REPO / "out" / "test-artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "port_kernel_profile.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.set_default_timeout(120_000)  # every wait below is bounded
        try:
            page.goto(lab + "lab/tree/port_kernel.ipynb")
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')")
            _start_kernel(page)
            # fire and forget: awaiting the command's promise would wait on any dialog it opens
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            profile = page.locator(".jupyter-widgets button", has_text="Profile")
            profile.wait_for()  # the panel is rendered: the cells ran
            profile.click()
            table = page.locator(".jupyter-widgets table", has_text="candidate ms")
            table.wait_for(timeout=180_000)
            figure = page.locator(".jupyter-widgets img").first
            figure.wait_for()
            table.scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
            text = table.inner_text()
            assert "native ms" in text and "promoted ms" in text and "8x64" in text
            width, height = figure.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 100 and height > 100, (width, height)
            page.get_by_text(re.compile(r"\d\d:\d\d:\d\d profile: ok")).wait_for()  # the panel's history line
        except Exception:
            page.screenshot(path=str(shot))
            raise
        finally:
            browser.close()
    print(f"screenshot: {shot}")
