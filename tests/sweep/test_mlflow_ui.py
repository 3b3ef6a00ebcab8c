"""The MLflow UI as a user sees it: a real `mlflow server`, its REST API, and headless Chromium.

A module fixture fills a temporary store with a short real sweep, starts
`mlflow server` on 127.0.0.1 against it, and stops it (the whole process group) at the end.
The REST tests read it as any external client would; the browser tests open the UI in
Debian's headless Chromium through Selenium (never a downloaded browser or driver) and
check the runs table (run names, the `bias_variance` tag column, the Dataset and Models
columns), the experiment's Models tab (each run's logged model), a run page (metrics,
description), an artifact (the gradient heatmap PNG renders), a run's step images in the
image card of its Model metrics tab (its slider goes from before training to the last step) and the
sweep parent's summary table.

Knobs (environment):
    MLFLOW_UI_SCREENSHOTS=DIR  save the screenshots there (default: a pytest temp dir);
                               `python docs/screenshots.py` uses it to refresh docs/img/.
    MLFLOW_UI_STORE=URI        serve this existing sqlite store instead of filling one.

Without chromium/chromedriver the browser tests are skipped with the install command,
unless CI is set: in CI a missing browser is a failure.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from support import REPO, mlflow_api, run_tags

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--window-size=1600,1000",
)
# A short real sweep: the course preset's zeros and He initializations, 3000 iterations each
# (three logging intervals, so four step images of each key), both in one worker process as
# a longer sweep would run them (each logs its model).
SWEEP = (
    *("-m", "experiments.sweep", "--preset", "course", "--experiment", "initialization"),
    *("--set", "init=zeros,he", "--set", "iterations=3000", "--workers", "1"),
)
METRICS = ("train_error", "dev_error")  # what the run page and the runs table must show
PLOTS = ("decision_boundary.png", "errors.png", "gradient_norms.png")
STARTUP_TIMEOUT = 180  # seconds; a loaded 2-core CI box needs most of a minute for mlflow
PAGE_TIMEOUT = 60
# The value cell of the run page's metrics-table row whose name link reads arguments[0].
METRIC_VALUE = """
for (const row of document.querySelectorAll("[role=row]")) {
  const names = [...row.querySelectorAll("a")].map((a) => a.textContent.trim());
  const cells = row.querySelectorAll("[role=cell]");
  if (names.includes(arguments[0]) && cells.length > 1) return cells[cells.length - 1].textContent;
}
return null;
"""
# The chart view's image card titled arguments[0]: its slider and the images it has loaded.
IMAGE_CARD = """
const title = [...document.querySelectorAll("*")].find(
  (e) => e.children.length === 0 && e.textContent.trim() === arguments[0]);
let card = title;
while (card && !card.querySelector("[role=slider]")) card = card.parentElement;
if (!card) return null;
const thumb = card.querySelector("[role=slider]");
const loaded = [...card.querySelectorAll("img")].filter((i) => i.complete && i.naturalWidth > 0);
return {
  thumb: thumb,
  min: Number(thumb.getAttribute("aria-valuemin")),
  max: Number(thumb.getAttribute("aria-valuemax")),
  now: Number(thumb.getAttribute("aria-valuenow")),
  images: loaded.length,
  missing: card.textContent.includes("No image logged at this step"),
};
"""
RUN_NAME = "attributes.`Run Name`"  # the runs table's column ids: attributes.`…`, tags.`…`
COLUMN_TITLES = "[data-testid=column-selector-tree] .du-bois-light-tree-title"


@dataclass(frozen=True)
class Ui:
    url: str  # the server, http://127.0.0.1:<port>
    tracking_uri: str  # the store behind it, read directly with MlflowClient
    root: Path  # where screenshots go

    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)


# ---------------------------------------------------------------------------------------------
# The server and its store


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Terminate a process started with start_new_session=True and everything it spawned."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {STARTUP_TIMEOUT} s:\n{_tail(log)}")


def _fill(root: Path, tracking_uri: str) -> subprocess.Popen:
    """Start the sweep that fills the store (the server starts meanwhile)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, *SWEEP, "--tracking-uri", tracking_uri, "--out", str(root / "sweep")],
        cwd=root,  # the runs' artifacts go to <root>/mlruns
        env=env,
        stdout=open(root / "sweep.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> Ui:
    root = tmp_path_factory.mktemp("mlflow_ui")
    tracking_uri = os.environ.get("MLFLOW_UI_STORE") or f"sqlite:///{root / 'mlflow.db'}"
    # Create the schema once, before the server and the runs open the file concurrently.
    MlflowClient(tracking_uri).search_experiments()
    fillers = [] if os.environ.get("MLFLOW_UI_STORE") else [_fill(root, tracking_uri)]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    # Runs keep their local artifact paths (<root>/mlruns/...); the server reads those
    # directly when the UI asks for /get-artifact, so no --artifacts-destination is needed.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=open(log, "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so teardown stops its workers too
    )
    try:
        for filler in fillers:
            if filler.wait(timeout=600) != 0:
                pytest.fail(f"the sweep filling the store failed:\n{_tail(root / 'sweep.log')}")
        _wait_healthy(url, server, log)
        screenshots = Path(os.environ.get("MLFLOW_UI_SCREENSHOTS") or root / "screenshots")
        screenshots.mkdir(parents=True, exist_ok=True)
        yield Ui(url=url, tracking_uri=tracking_uri, root=screenshots)
    finally:
        for process in (*fillers, server):
            _stop(process)


def _runs(ui: Ui) -> list:
    """The runs that carry a diagnosis (a sweep's children, not its parent), newest first."""
    client = ui.client()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids, "tags.bias_variance != ''", max_results=1000)
    assert runs, f"no runs with a bias_variance tag in {ui.tracking_uri}"
    return runs


# ---------------------------------------------------------------------------------------------
# The REST API, as an external client uses it


def _get(ui: Ui, path: str) -> bytes:
    with urllib.request.urlopen(f"{ui.url}{path}", timeout=30) as response:
        assert response.status == 200, path
        return response.read()


def test_rest_experiments_search_lists_the_stores_experiments(ui):
    expected = {e.experiment_id: e.name for e in ui.client().search_experiments()}
    response = mlflow_api(ui.url, "experiments/search", {"max_results": 1000})
    assert {e["experiment_id"]: e["name"] for e in response["experiments"]} == expected
    assert {run.info.experiment_id for run in _runs(ui)} <= set(expected)


def test_rest_runs_search_returns_the_same_runs_params_and_tags(ui):
    client = ui.client()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    expected = {run.info.run_id: run for run in client.search_runs(experiment_ids)}
    query = {"experiment_ids": experiment_ids, "max_results": 1000}
    response = mlflow_api(ui.url, "runs/search", query)
    got = {run["info"]["run_id"]: run for run in response["runs"]}
    assert got.keys() == expected.keys()
    for run_id, run in got.items():
        want = expected[run_id]
        data = run["data"]
        assert run["info"]["run_name"] == want.info.run_name
        assert run["info"]["status"] == want.info.status
        assert {p["key"]: p["value"] for p in data.get("params", [])} == want.data.params
        assert {t["key"]: t["value"] for t in data.get("tags", [])} == want.data.tags
        metrics = {m["key"]: m["value"] for m in data.get("metrics", [])}
        assert metrics.keys() == want.data.metrics.keys()
        for key, value in want.data.metrics.items():
            assert math.isclose(metrics[key], value) or (math.isnan(value) and _isnan(metrics[key]))
    diagnosed = [run for run in got.values() if run_tags(run).get("bias_variance")]
    assert diagnosed, "no run in the REST answer has a bias_variance tag"
    for run in diagnosed:
        name = run["info"]["run_name"]
        assert run_tags(run).get("mlflow.note.content"), f"{name} has no description"


def test_runs_of_one_topic_log_the_same_metric_names(ui):
    """The compare view and charts line up only if a topic's runs log the same metric keys."""
    topics = {}
    for run in _runs(ui):
        topic = run.data.tags.get("sweep.experiment") or run.info.experiment_id
        keys = sorted(k for k in run.data.metrics if k.startswith("grad_norm/") or k in METRICS)
        topics.setdefault(topic, {})[run.info.run_name] = keys
    for topic, keys_by_run in topics.items():
        distinct = {tuple(keys) for keys in keys_by_run.values()}
        assert len(distinct) == 1, f"{topic} runs log different metric names: {keys_by_run}"


def test_rest_serves_each_runs_plots_as_the_ui_fetches_them(ui):
    for run in _runs(ui):
        listing = json.loads(_get(ui, f"/api/2.0/mlflow/artifacts/list?run_id={run.info.run_id}"))
        names = {f["path"] for f in listing.get("files", [])}
        assert set(PLOTS) <= names, f"{run.info.run_name}: artifacts {sorted(names)}"
        served = _get(ui, f"/get-artifact?path=gradient_norms.png&run_uuid={run.info.run_id}")
        local = Path(ui.client().download_artifacts(run.info.run_id, "gradient_norms.png"))
        assert served == local.read_bytes()


def _isnan(value) -> bool:
    return (isinstance(value, str) and value.lower() == "nan") or value != value


# ---------------------------------------------------------------------------------------------
# The UI in headless Chromium


def _unavailable(reason: str) -> None:
    """Skip a browser test outside CI; in CI the browser is part of the setup, so fail."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI is set: the browser test must run there)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(ui):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        _unavailable(
            f"{', '.join(missing)} not found: install Debian's browser with "
            "`sudo apt-get install chromium chromium-driver`"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.selenium_manager import SeleniumManager
    except ImportError:
        _unavailable("selenium is not installed: pip install -e '.[dev]'")

    def no_download(*args, **kwargs):
        raise AssertionError("Selenium Manager was asked to find or download a browser")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", no_download)
        # An explicit driver path makes Selenium skip Selenium Manager altogether.
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str, timeout: float = PAGE_TIMEOUT):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # React re-renders replace elements under our feet; try again rather than fail.
    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.25, ignored_exceptions=[StaleElementReferenceException]
    )
    try:
        return wait.until(condition)
    except TimeoutException:
        name = what.replace(" ", "_")[:40]
        driver.save_screenshot(str(Path(tempfile.gettempdir()) / f"mlflow_ui_timeout_{name}.png"))
        pytest.fail(f"timed out after {timeout} s waiting for {what} at {driver.current_url}")


def _find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _open(driver, ui: Ui, route: str) -> None:
    """Open a UI route in the classic-ML view (MLflow 3 defaults to its GenAI layout)."""
    separator = "&" if "?" in route else "?"
    driver.get(f"{ui.url}/#{route}{separator}workflowType=machine_learning")


def _close_assistant(driver) -> None:
    """The MLflow Assistant side panel opens on first visit; close it to free the width."""
    for button in _find(driver, "button[data-component-id='mlflow.assistant.chat_panel.close']"):
        if button.is_displayed():
            button.click()


def _select_columns(driver, names: dict[str, bool]) -> None:
    """Tick (True) or untick (False) runs-table columns through the "Columns" selector."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    toggle = _wait(
        driver,
        lambda d: next(
            (
                b
                for b in d.find_elements(By.CSS_SELECTOR, "[data-testid=column-selection-dropdown]")
                if b.text.strip() == "Columns"
            ),
            None,
        ),
        "the Columns button",
    )
    toggle.click()
    search = _wait(
        driver,
        lambda d: next(iter(_find(d, "input[placeholder='Search columns']")), None),
        "the column search box",
    )
    for name, wanted in names.items():
        search.send_keys(Keys.CONTROL, "a")
        search.send_keys(name)
        title = _wait(
            driver,
            lambda d, name=name: next(
                (title for title in _find(d, COLUMN_TITLES) if title.text.strip() == name),
                None,
            ),
            f"column {name} in the selector",
        )
        node = title.find_element(By.XPATH, "./ancestor::div[contains(@class, 'tree-treenode')]")
        if ("checkbox-checked" in node.get_attribute("class")) != wanted:
            title.click()
    search.send_keys(Keys.ESCAPE)


def _expand_parents(driver, parent_ids: set[str]) -> None:
    """Show a sweep's child runs: the table lists them collapsed under their parent run."""
    for parent_id in parent_ids:
        _wait(driver, lambda d, p=parent_id: _cell(d, p, RUN_NAME), f"parent run {parent_id}")
        # The parent's Run Name cell holds one button, the +/- expander.
        _find(driver, f".ag-row[row-id='{parent_id}'] [col-id='{RUN_NAME}'] button")[0].click()


def _show_rows(driver, runs) -> None:
    """Every run's row, unfolding parents still folded (the UI remembers unfolded ones within
    a browser session, and the expander toggles)."""
    parents = {run.data.tags.get(MLFLOW_PARENT_RUN_ID) for run in runs} - {None}
    for parent_id in parents:
        _wait(driver, lambda d, p=parent_id: _cell(d, p, RUN_NAME), f"parent run {parent_id}")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def every_row(d) -> bool:
        return all(_cell(d, run.info.run_id, RUN_NAME) for run in runs)

    try:
        WebDriverWait(driver, 5, poll_frequency=0.25).until(every_row)
    except TimeoutException:
        _expand_parents(driver, parents)
    _wait(driver, every_row, "every run's row")


def _widen(driver, column: str, pixels: int) -> None:
    """Drag a runs-table column's resize handle; cosmetic, so a missing handle is no failure."""
    from selenium.webdriver.common.action_chains import ActionChains

    handles = _find(driver, f".ag-header-cell[col-id='{column}'] .ag-header-cell-resize")
    if handles:
        drag = ActionChains(driver).move_to_element(handles[0]).click_and_hold()
        drag.move_by_offset(pixels, 0).release().perform()


def _cell(driver, run_id: str, column: str) -> str | None:
    cells = _find(driver, f".ag-row[row-id='{run_id}'] [col-id='{column}']")
    return cells[0].text.strip() if cells else None


def _screenshot(driver, path: Path, content: str) -> None:
    """Save the page cut to just below `content` (CSS), so README images carry no blank half."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    bottom = driver.execute_script(
        "return Math.max(...[...document.querySelectorAll(arguments[0])]"
        ".map((e) => e.getBoundingClientRect().bottom))",
        content,
    )
    size = driver.get_window_size()
    chrome = driver.execute_script("return window.outerHeight - window.innerHeight")
    pointer = ActionBuilder(driver)  # park the mouse in a corner: no hover highlights
    pointer.pointer_action.move_to_location(2, 2)
    pointer.perform()
    driver.set_window_size(size["width"], min(size["height"], int(bottom) + 80 + chrome))
    time.sleep(0.5)  # let the table re-lay itself out in the shorter window
    driver.save_screenshot(str(path))
    driver.set_window_size(size["width"], size["height"])


def _png_width(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big")


def test_runs_table_shows_run_names_and_bias_variance_column(ui, browser):
    runs = _runs(ui)
    experiment_id = runs[0].info.experiment_id
    runs = [run for run in runs if run.info.experiment_id == experiment_id]
    _open(browser, ui, f"/experiments/{experiment_id}/runs")
    _expand_parents(browser, {run.data.tags.get(MLFLOW_PARENT_RUN_ID) for run in runs} - {None})
    _wait(
        browser,
        lambda d: all(_cell(d, run.info.run_id, RUN_NAME) for run in runs),
        "every run's row",
    )
    _close_assistant(browser)
    for run in runs:
        assert run.info.run_name in _cell(browser, run.info.run_id, RUN_NAME)
    # Trade the default Dataset/Source/Models columns (the next test reads them) for the
    # diagnosis.
    columns = {"Dataset": False, "Source": False, "Models": False, "bias_variance": True}
    columns |= {tag: True for tag in ("gradient_health",) if any(tag in r.data.tags for r in runs)}
    columns |= {key: True for key in METRICS if any(key in r.data.metrics for r in runs)}
    _select_columns(browser, columns)
    expected = {run.info.run_id: run.data.tags["bias_variance"] for run in runs}
    _wait(
        browser,
        lambda d: {rid: _cell(d, rid, "tags.`bias_variance`") for rid in expected} == expected,
        "the bias_variance column to show each run's tag",
    )
    headers = {h.text for h in _find(browser, ".ag-header-cell[col-id]")}
    assert {name for name, shown in columns.items() if shown} <= headers
    _widen(browser, RUN_NAME, 170)  # whole run names and labels in the screenshot
    _widen(browser, "tags.`bias_variance`", 70)
    _screenshot(browser, ui.root / "runs_table.png", ".ag-row")


def test_runs_table_shows_each_runs_datasets_and_model(ui, browser):
    runs = _runs(ui)
    experiment_id = runs[0].info.experiment_id
    runs = [run for run in runs if run.info.experiment_id == experiment_id]
    _open(browser, ui, f"/experiments/{experiment_id}/runs")
    _show_rows(browser, runs)
    _close_assistant(browser)
    _select_columns(browser, {"Dataset": True, "Models": True})
    for run in runs:
        inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
        training = inputs["training"]
        assert set(inputs) == {"training", "validation"}
        _wait(
            browser,
            lambda d, run=run, t=training: (
                f"{t.name} ({t.digest})"
                in (_cell(d, run.info.run_id, "attributes.`Dataset`") or "")
            ),
            f"{run.info.run_name}'s training set in the Dataset column",
        )
        _wait(
            browser,
            lambda d, run=run: _cell(d, run.info.run_id, "attributes.`Models`") == "model",
            f"{run.info.run_name}'s model in the Models column",
        )


def test_models_tab_lists_each_runs_logged_model(ui, browser):
    from selenium.webdriver.common.by import By

    runs = _runs(ui)
    experiment_id = runs[0].info.experiment_id
    models = ui.client().search_logged_models([experiment_id])
    by_run = {run.info.run_id: run.info.run_name for run in runs}
    assert {model.source_run_id for model in models} >= {
        run.info.run_id for run in runs if run.info.experiment_id == experiment_id
    }
    _open(browser, ui, f"/experiments/{experiment_id}/models")
    names = [by_run[model.source_run_id] for model in models if model.source_run_id in by_run]
    _wait(
        browser,
        lambda d: all(name in d.find_element(By.TAG_NAME, "body").text for name in names),
        "every logged model's source run in the Models tab",
    )
    assert "Ready" in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(ui.root / "models_tab.png"))


def test_run_page_shows_metrics_and_description(ui, browser):
    from selenium.webdriver.common.by import By

    run = _runs(ui)[0]
    _open(browser, ui, f"/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
    shown = {}
    for key in METRICS:
        value = _wait(
            browser,
            lambda d, key=key: d.execute_script(METRIC_VALUE, key),
            f"metric {key} in the run page's metrics table",
        )
        shown[key] = float(value)
    assert shown == pytest.approx({k: run.data.metrics[k] for k in shown})
    _close_assistant(browser)
    description = run.data.tags["mlflow.note.content"].splitlines()[0]
    _wait(
        browser,
        lambda d: description in d.find_element(By.TAG_NAME, "body").text,
        "the description",
    )
    browser.save_screenshot(str(ui.root / "run_page.png"))


def test_gradient_heatmap_artifact_renders(ui, browser):
    run = next(r for r in _runs(ui) if r.data.tags.get("gradient_health") == "healthy")
    route = f"/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts"
    _open(browser, ui, f"{route}/gradient_norms.png")
    width = _wait(
        browser,
        lambda d: d.execute_script(
            "const img = document.querySelector(\"img[alt='gradient_norms.png']\");"
            "return img && img.complete && img.naturalWidth;"
        ),
        "the gradient_norms.png preview to load",
    )
    local = Path(ui.client().download_artifacts(run.info.run_id, "gradient_norms.png"))
    assert width == _png_width(local.read_bytes())
    _close_assistant(browser)
    _screenshot(browser, ui.root / "gradient_heatmap.png", "img[alt='gradient_norms.png']")


def _image_steps(ui: Ui, run_id: str, key: str) -> list[int]:
    """The steps of a run's step images of `key`, from the file names MLflow gives them."""
    pattern = re.compile(rf"images/{re.escape(key)}\+step\+(\d+)\+timestamp\+\d+\+[-0-9a-f]+\.png")
    paths = [a.path for a in ui.client().list_artifacts(run_id, "images")]
    return sorted(int(m.group(1)) for m in map(pattern.fullmatch, paths) if m)


def test_image_card_steps_through_a_runs_training(ui, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    runs = [run for run in _runs(ui) if run.data.tags.get("mlflow.loggedImages")]
    assert runs, "no run logged step images"
    steps = _image_steps(ui, runs[0].info.run_id, "decision_boundary")
    assert len(steps) >= 3 and steps[0] == 0, steps
    run = runs[0]
    _open(
        browser, ui, f"/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics"
    )
    _close_assistant(browser)
    search = _wait(
        browser,
        lambda d: next(iter(_find(d, "input[placeholder='Search metric charts']")), None),
        "the model metrics tab's search box",
    )
    search.send_keys("decision_boundary")
    card = _wait(
        browser,
        lambda d: (c := d.execute_script(IMAGE_CARD, "decision_boundary")) and c["images"] and c,
        "the decision_boundary image card with an image at its first step",
    )
    assert (card["min"], card["max"], card["now"]) == (steps[0], steps[-1], steps[0])
    assert not card["missing"]
    ActionChains(browser).click(card["thumb"]).perform()
    for step in steps[1:]:  # the arrow key moves the slider to the next logged step
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        _wait(
            browser,
            lambda d, step=step: (
                (c := d.execute_script(IMAGE_CARD, "decision_boundary"))
                and c["now"] == step
                and c["images"]
                and not c["missing"]
            ),
            f"the image card to show the image of step {step}",
        )
    _screenshot(browser, ui.root / "image_card.png", "[role=slider]")


def test_sweep_parents_summary_table_renders(ui, browser):
    client = ui.client()
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    parent = client.search_runs(experiment_ids, "tags.`sweep.role` = 'parent'")[0]
    table = json.loads(
        Path(client.download_artifacts(parent.info.run_id, "summary_table.json")).read_text()
    )
    route = f"/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/artifacts"
    _open(browser, ui, f"{route}/summary_table.json")

    def rows(d):
        found = [
            [cell.text.strip() for cell in row.find_elements("css selector", "[role=cell]")]
            for row in _find(d, "[role=row]")
        ]
        found = [row for row in found if row]
        return found if len(found) == len(table["data"]) else None

    shown = _wait(browser, rows, "the summary table's rows")
    headers = [h.text.strip() for h in _find(browser, "[role=columnheader]")]
    assert headers == table["columns"]
    for cells, values in zip(shown, table["data"], strict=True):
        for cell, value in zip(cells, values, strict=True):
            if isinstance(value, (int, float)):
                assert float(cell) == pytest.approx(value), (cell, value)
            else:
                assert cell == str(value)
