"""main.ipynb run top to bottom through JupyterLab's own UI, in headless Chromium: Run All twice in
one kernel, then the README's steps in the same folders.

Screenshots, the server's log and both executed notebooks are kept in test-artifacts/jupyterlab/.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, copy_small_project, free_port, run_script
from test_notebook import assert_the_whole_notebook_ran_twice, stdout_of
from test_script import alike, the_readme_commands

pytestmark = pytest.mark.slow  # every test here runs MindSpore for seconds or more


CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"the whole notebook runs here only, and needs Chromium at {CHROMIUM}: apt-get install chromium",
                allow_module_level=True)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs Playwright: pip install -r requirements-test.txt")

# No sandbox because CI runs as root; the rest stops Chromium calling Google, which is refused here.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts" / "jupyterlab"
STEPS_PER_EPOCH = 20  # the kernel inherits TUTORIAL_STEPS_PER_EPOCH from the server
RUN_TIMEOUT_S = 15 * 60

# JupyterLab user settings: no news or update checks (network); every cell attached to the page,
# so that the checks and the screenshot see the whole notebook, and no blank space after it.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
}

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"
STDOUT = f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]'
# JupyterLab shows an exception's traceback as stderr too.
STDERR = f'{NOTEBOOK} .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
FIGURES = f"{NOTEBOOK} .jp-OutputArea-output img"
PROMPTS = f"{NOTEBOOK} .jp-CodeCell .jp-InputArea-prompt"

# The status bar's "Python 3 (ipykernel) | Idle". Not the notebook toolbar's indicator: that one
# says idle before there is a kernel, and Run All then asks which kernel to start, or does nothing.
KERNEL_READY = """() => [...document.querySelectorAll('.jp-StatusBar-TextItem')]
    .some(item => /^(?!No Kernel).+ \\| Idle$/.test(item.textContent.trim()))"""
# Prompts are empty before the run (the outputs were cleared), [*] while queued or running; the
# first cell's prompt leaves [1] when the second run reaches it.
RUN_STARTED = """() => [...document.querySelectorAll('%s')]
    .some(prompt => prompt.textContent.trim() !== '[ ]:')""" % PROMPTS
SECOND_RUN_STARTED = """() => document.querySelector('%s').textContent.trim() !== '[1]:'""" % PROMPTS
# Finished: the kernel idle and nothing queued; a cell that fails leaves the cells after it empty.
RUN_FINISHED = """() => {
    const prompts = [...document.querySelectorAll('%s')].map(prompt => prompt.textContent.trim());
    const status = document.querySelector('%s .jp-Notebook-ExecutionIndicator')?.dataset.status;
    return status === 'idle' && !prompts.includes('[*]:');
}""" % (PROMPTS, NOTEBOOK)
# JupyterLab fills the window and scrolls the notebook inside it: how far it scrolls.
NOTEBOOK_OVERFLOW = """() => {
    const scroller = document.querySelector('%s .jp-WindowedPanel-outer');
    return scroller.scrollHeight - scroller.clientHeight;
}""" % NOTEBOOK
WIDTH, HEIGHT, MAX_HEIGHT = 1400, 1000, 32000  # the window, in pixels


def artifact(name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name




def clear_outputs(path):
    """Clear the committed outputs, so that everything the page shows comes from this run."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)


def write_lab_settings(settings_dir):
    for plugin, values in LAB_SETTINGS.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def wait_for_server(process, url, token, log, timeout=120):
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url + "api/status", headers={"Authorization": f"token {token}"})
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(request, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url}api/status in {timeout} s:\n{log.read_text()}")


def stop(process):
    """Stop the server and everything in its process group; the server shuts its kernels down."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


@pytest.fixture
def notebook_dir(small_project):
    """The project copy with a tenth of MNIST, and the notebook's outputs cleared."""
    clear_outputs(small_project / "main.ipynb")
    return small_project


@pytest.fixture
def jupyterlab(notebook_dir, tmp_path):
    """A JupyterLab server on a free port with a random token; yields (base URL, token)."""
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "jupyter"
    write_lab_settings(home / "settings")
    # Own config and runtime folders keep the user's Jupyter setup out, and the server's files in.
    env = dict(os.environ, TUTORIAL_STEPS_PER_EPOCH=str(STEPS_PER_EPOCH),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"))
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebook_dir}",
        # Open main.ipynb as it is, not paired with main.py by Jupytext (in requirements-test.txt).
        "--ServerApp.jpserver_extensions=jupyterlab_jupytext=False",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--LabApp.user_settings_dir={home / 'settings'}", f"--LabApp.workspaces_dir={home / 'workspaces'}",
    ]
    log = tmp_path / "jupyterlab.log"
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=notebook_dir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_server(server, url, token, log)
        yield url, token
    finally:
        stop(server)
        shutil.copy(log, artifact("jupyterlab.log"))


@pytest.fixture
def page():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        finally:
            browser.close()


def menu(page, title, command):
    """Pick the item that runs `command` from the menu `title` of the menu bar."""
    page.get_by_role("menuitem", name=title, exact=True).click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


def save_notebook(page, path, name):
    """Save the notebook from the page, keep a copy of the file as `name`, and return it read."""
    menu(page, "File", "docmanager:save")
    page.locator(".lm-TabBar-tab.jp-mod-dirty").wait_for(state="detached")
    shutil.copy(path, artifact(name))
    return nbformat.read(path, as_version=4)


def run_all(page, started):
    """Run → Run All Cells; wait until the run has begun (`started`, a page function) and ended."""
    begun = time.monotonic()
    menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(started, timeout=60_000)
    page.wait_for_function(RUN_FINISHED, timeout=RUN_TIMEOUT_S * 1000, polling=2000)
    print(f"Run All took {time.monotonic() - begun:.0f} s")


def prediction_figure(page):
    """The first figure of the first cell that runs infer(): the tutorial's prediction."""
    cell = page.locator(f"{NOTEBOOK} .jp-CodeCell").filter(has_text="infer(").filter(has=page.locator("img"))
    return cell.first.locator(".jp-OutputArea-output img").first


def fit_window_to_notebook(page):
    """Make the window tall enough to show the whole notebook, up to MAX_HEIGHT."""
    # Cells lay themselves out again at each size, hence a few rounds.
    for _ in range(5):
        overflow, height = page.evaluate(NOTEBOOK_OVERFLOW), page.viewport_size["height"]
        if overflow <= 0 or height >= MAX_HEIGHT:
            return
        page.set_viewport_size({"width": WIDTH, "height": min(height + overflow, MAX_HEIGHT)})
        page.wait_for_timeout(1000)


def keep_screenshots(page):
    """Screenshots of the window on the prediction figure, and of the whole notebook."""
    if prediction_figure(page).count():
        prediction_figure(page).evaluate("img => img.scrollIntoView({block: 'center'})")
    page.screenshot(path=artifact("prediction.png"))
    fit_window_to_notebook(page)
    last_cell = page.locator(f"{NOTEBOOK} .jp-Cell").last.bounding_box()
    height = page.viewport_size["height"]
    if last_cell:  # no blank window below the notebook
        height = min(height, last_cell["y"] + last_cell["height"] + 20)
    page.screenshot(path=artifact("notebook.png"), clip={"x": 0, "y": 0, "width": WIDTH, "height": height})
    print("Screenshots:", artifact("prediction.png"), artifact("notebook.png"))


def test_notebook_runs_twice_in_jupyterlab_then_the_readme_commands_work(jupyterlab, notebook_dir, page, tmp_path):
    url, token = jupyterlab
    page.goto(f"{url}lab/tree/main.ipynb?token={token}")
    page.wait_for_function(KERNEL_READY, timeout=180_000)
    try:
        run_all(page, RUN_STARTED)
        first = save_notebook(page, notebook_dir / "main.ipynb", "main-first-run.ipynb")
        run_all(page, SECOND_RUN_STARTED)
        second = save_notebook(page, notebook_dir / "main.ipynb", "main.ipynb")
    finally:
        keep_screenshots(page)

    tracebacks = [text for text in page.locator(STDERR).all_inner_texts() if "Traceback" in text]
    assert not tracebacks, tracebacks[0]
    prompts = [prompt.strip() for prompt in page.locator(PROMPTS).all_inner_texts()]
    cells = len(prompts)
    assert prompts == [f"[{n}]:" for n in range(cells + 1, 2 * cells + 1)], "every cell run twice, in order"
    stdout = "\n".join(page.locator(STDOUT).all_inner_texts())
    assert re.search(r"Eval result: epoch 2, metrics: .*'acc': 0\.\d+", stdout), stdout
    assert "Checkpoints after first training:" in stdout and "Checkpoints after resuming training:" in stdout
    outputs = "\n".join(page.locator(f"{NOTEBOOK} .jp-OutputArea-output").all_inner_texts())
    assert "[ERROR]" not in outputs and "[WARNING]" not in outputs
    # the progress bars are widgets: a bar, and its label and counts in HTML widgets beside it
    assert page.locator(f"{NOTEBOOK} .widget-hprogress").count() >= 2, "no progress bar"
    bar_texts = page.locator(f"{NOTEBOOK} .widget-html-content").evaluate_all("els => els.map(e => e.textContent)")
    bar_texts = [text.replace("\u2007", " ").strip() for text in bar_texts]  # tqdm pads with figure spaces
    assert any(re.fullmatch(r"epoch 2/2: *100%", text) for text in bar_texts), bar_texts
    assert re.search(r"^file +epoch +global step +acc +loss", stdout, re.MULTILINE), stdout
    assert re.search(r"^lenet-best\.ckpt +\d+ +\d+ +0\.\d+", stdout, re.MULTILINE), stdout
    assert prediction_figure(page).count(), "no figure in the output of infer()"
    for figure in page.locator(FIGURES).all():
        assert figure.get_attribute("src").startswith("data:image/png;base64,")
        assert figure.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
    assert_the_whole_notebook_ran_twice(first, second)
    # after the notebook, the README's commands work in the same folders
    the_readme_commands(notebook_dir, [])
    # python main.py is Run All: on the same quick run, in a project of its own, the script prints every
    # line that the notebook printed, numbers aside
    script_dir = copy_small_project(tmp_path / "script")
    script = run_script(script_dir, "--steps_per_epoch", str(STEPS_PER_EPOCH), main="main.py")
    assert script.returncode == 0, script.stderr
    missing = sorted(alike(stdout_of(first)) - alike(script.stdout))
    assert not missing, missing
