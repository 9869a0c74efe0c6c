"""A real browser: JupyterLab on 127.0.0.1, port_kernel.ipynb opened in headless Chromium (Playwright,
Debian's chromium binary). The porting day on cpu: run all cells (the `%%candidate` cell feeds the panel),
Check, Profile, Promote (into a copy of the repo), then a broken candidate in the panel's editor marks the
earlier tables stale. A regression report opened in the same browser shows its headline first.
Screenshots (panel.png, report.png; docs/img/ holds copies) go to $WORKBENCH_ARTIFACTS (default:
out/test-artifacts/).

Needs chromium (`apt-get install chromium`), playwright and jupyterlab (pip); .ci/run installs them.
Without them the test skips with a warning that says what is missing.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
from helpers import REPO, repo_copy, shared_cache

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set WORKBENCH_CHROMIUM)"
    for module, package in (
        ("playwright.sync_api", "playwright"),
        ("jupyterlab", "jupyterlab"),
        ("ipywidgets", "ipywidgets>=8"),
    ):
        try:
            __import__(module)
        except ImportError:
            return f"python package {package} is not installed (pip install {package})"
    return None


def _skip_without_browser() -> None:
    why = _missing()
    if why:
        warnings.warn(f"BROWSER TEST SKIPPED: {why}", stacklevel=2)
        pytest.skip(f"browser test cannot run here: {why}")


def _artifacts() -> Path:
    folder = Path(os.environ.get("WORKBENCH_ARTIFACTS") or REPO / "out" / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


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
    """JupyterLab serving the notebooks of a copy of the repo (Promote writes there); yields (URL, copy)."""
    _skip_without_browser()
    repo = repo_copy(tmp_path / "repo")
    root = repo / "notebooks"
    port = _free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(repo),
        WORKBENCH_STORE=str(tmp_path / "store.db"),
        WORKBENCH_CACHE=shared_cache(),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
    )
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--allow-root",
                f"--ServerApp.root_dir={root}",
                "--IdentityProvider.token=",
                "--ServerApp.password=",
                "--LabApp.expose_app_in_browser=True",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=root,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_server(url, proc, log)
        yield url, repo
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


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])


def _screenshot_from(page, element, path: Path) -> None:
    """The viewport with `element`'s top at the top (JupyterLab's notification toasts hidden)."""
    page.add_style_tag(content=".Toastify, .jp-toast-container { display: none !important; }")
    element.evaluate("el => el.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(path))


def test_porting_day_in_a_real_browser(lab):
    from playwright.sync_api import sync_playwright

    url, repo = lab
    shot = _artifacts() / "panel.png"
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.set_default_timeout(120_000)  # every wait below is bounded
        try:
            page.goto(url + "lab/tree/port_kernel.ipynb")
            page.wait_for_function("() => window.jupyterapp && document.querySelector('.jp-Notebook')")
            _start_kernel(page)
            page.evaluate(
                "() => { const app = window.jupyterapp;"
                " if (!app.shell.leftCollapsed) app.commands.execute('application:toggle-left-area'); }"
            )
            # fire and forget: awaiting the command's promise would wait on any dialog it opens
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            panel = page.locator(
                ".jupyter-widgets.widget-vbox", has=page.locator("button", has_text="Profile")
            )
            panel.first.wait_for()
            page.get_by_text(
                re.compile(r"candidate for rms_norm: cell In\[\d+\]")
            ).wait_for()  # the magic ran
            page.get_by_text(re.compile(r"candidate: cell In\[\d+\]")).first.wait_for()  # the panel says so

            page.locator(".jupyter-widgets button", has_text="Check").click()
            page.get_by_text("starting worker…").or_(
                page.get_by_text(re.compile("check ok"))
            ).first.wait_for()
            page.locator(".jupyter-widgets table", has_text="candidate rms_norm").wait_for()
            page.get_by_text(re.compile(r"check ok \(.*worker up in")).wait_for()

            page.locator(".jupyter-widgets button", has_text="Profile").click()
            table = page.locator(".jupyter-widgets table", has_text="candidate ms")
            table.wait_for(timeout=180_000)
            text = table.inner_text()
            assert "native ms" in text and "current ms" in text and "8x64" in text and "promoted" not in text
            assert "inductor ms" in text  # the peer ticked by default
            figure = page.locator(".jupyter-widgets img").first
            figure.wait_for()
            width, height = figure.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width > 100 and height > 100, (width, height)
            history = re.compile(r"\d\d:\d\d:\d\d profile rms_norm · cpu · quick · fp32 · peers inductor: ok")
            page.get_by_text(history).wait_for()
            _screenshot_from(page, panel.first, shot)

            page.locator(".jupyter-widgets button", has_text="Promote").click()
            outcome = page.get_by_text(re.compile(r"^(promoted|refused): ")).first
            outcome.wait_for(timeout=300_000)
            assert outcome.inner_text().startswith("promoted: "), panel.first.inner_text()[-4000:]
            assert (repo / "workbench" / "ops" / "variants" / "rms_norm_cpu.py").is_file()

            editor = page.locator(".jupyter-widgets textarea").first
            editor.fill("def rms_norm(x, weight=None, eps=1e-6:\n    return x\n")  # a syntax error
            page.locator(".jupyter-widgets button", has_text="Check").click()
            page.get_by_text(re.compile(r"check error")).first.wait_for()
            stale = page.locator(".jupyter-widgets", has_text="STALE").first
            stale.wait_for()
            assert page.locator(".wb-stale table", has_text="candidate rms_norm").count() == 1
            page.locator(".jupyter-widgets", has_text="SyntaxError").first.wait_for()
            _screenshot_from(page, panel.first, _artifacts() / "panel_stale.png")
        except Exception:
            page.screenshot(path=str(shot))
            raise
        finally:
            browser.close()
    print(f"screenshot: {shot}")


def test_report_headline_in_a_real_browser(tmp_path, monkeypatch):
    """A small regression run's report.html: the headline block first, figures as linked files."""
    _skip_without_browser()
    import matplotlib

    matplotlib.use("Agg")
    from playwright.sync_api import sync_playwright

    from workbench import regression

    monkeypatch.setenv("WORKBENCH_CACHE", shared_cache())
    cfg = regression.configure(
        ops=["silu", "neg"],
        cases=["quick"],
        check_cases=["quick"],
        dtypes=["fp32"],
        check_dtypes=["fp32"],
        rep_ms=1,
        store=str(tmp_path / "r.db"),
        output_dir=str(tmp_path / "out"),
        seed=1,
    )
    check_df, bench_df = regression.run_check(cfg), regression.run_bench(cfg)
    regression.record(cfg, check_df, bench_df)
    comparison = regression.compare_with_baseline(cfg, bench_df)  # against the rows just stored
    plots = regression.save_figures(cfg, regression.figures(cfg, bench_df, comparison))
    report = regression.write_report(cfg, check_df, bench_df, comparison, plots)
    shot = _artifacts() / "report.png"
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1100, "height": 1300})
        try:
            page.goto(report.as_uri())
            page.get_by_role("heading", name="workbench regression: PASS").wait_for()
            headline = page.locator("#headline table")
            text = headline.inner_text()
            for column in (
                "checks passed",
                "checks failed",
                "regressions",
                "median speedup",
                "worst speedup",
            ):
                assert column in text, column
            assert "\tcpu\t" in text or text.splitlines()[-1].startswith("cpu")
            top = headline.bounding_box()["y"]
            assert top < page.locator("h2", has_text="Against the baseline").bounding_box()["y"]
            assert top < page.locator("h2", has_text="Side by side").bounding_box()["y"]
            pages = page.locator(".pages img")
            assert pages.count() == 1 and pages.first.evaluate("img => img.naturalWidth") > 300
            page.screenshot(path=str(shot))
        finally:
            browser.close()
