"""The course notebooks, executed as a reader would run them, at small settings.

Each notebook's cell tagged `parameters` is replaced by the settings below before it runs
(nbclient, in a fresh Jupyter kernel with this checkout on its path): every cell must run
without an error, and each notebook's last cell asserts its claim at those settings, so a
claim that stops holding fails the suite. The committed notebooks carry no outputs.
"""

import json
import time

import nbformat
import pytest
from mlflow.tracking import MlflowClient
from nbclient import NotebookClient
from support import REPO

NOTEBOOKS = REPO / "notebooks"
# Per notebook, what replaces its parameters cell: few iterations, one seed.
CI_SETTINGS = {
    "initialization": {"ITERATIONS": 3000, "SEED": 1, "LOG_MODEL": True},
    "regularization": {"ITERATIONS": 3000, "SEED": 1, "LOG_MODEL": False},  # tried both ways
    "gradient_checking": {"SEED": 1},
    "tradeoff": {
        "WIDTHS": (1, 16),
        "ROUNDS": 4,
        "TOLERANCE": None,
        "ITERATIONS": 800,
        "N_DEV": 300,
        "SEED": 0,
        "LOG_MODEL": False,
    },
}
MAX_BYTES = 20_000  # a committed notebook is its source: figures and tables are outputs


def test_every_notebook_has_ci_settings():
    assert {path.stem for path in NOTEBOOKS.glob("*.ipynb")} == set(CI_SETTINGS)


@pytest.mark.parametrize("name", sorted(CI_SETTINGS))
def test_committed_notebooks_are_small_and_without_outputs(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.stat().st_size < MAX_BYTES
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    (parameters,) = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert parameters is code[0]
    for key in CI_SETTINGS[name]:
        assert f"{key} = " in parameters.source


def execute(name: str, tracking_uri: str, cwd) -> tuple[nbformat.NotebookNode, float]:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    settings = {**CI_SETTINGS[name], "TRACKING_URI": tracking_uri}
    parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = "\n".join(f"{key} = {value!r}" for key, value in settings.items())
    started = time.perf_counter()
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook, time.perf_counter() - started


def text_of(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", "") or json.dumps(output.get("data", {})))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CI_SETTINGS))
def test_notebook_runs_and_its_claim_holds(name, mlflow_store, tmp_path):
    notebook, seconds = execute(name, mlflow_store, tmp_path)
    print(f"{name}.ipynb: {seconds:.1f} s at {CI_SETTINGS[name]}")
    text = text_of(notebook)
    runs = MlflowClient(mlflow_store).search_runs(
        [e.experiment_id for e in MlflowClient(mlflow_store).search_experiments()]
    )
    assert runs and all(run.info.status == "FINISHED" for run in runs)
    for run in runs:  # each run's link is printed
        assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in text
    figures = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert figures, "figures are shown inline"
    if CI_SETTINGS[name].get("LOG_MODEL"):
        import mlflow.keras

        model = mlflow.keras.load_model(f"runs:/{runs[0].info.run_id}/model")
        assert model.count_params() > 0


@pytest.mark.slow
def test_a_claim_that_no_longer_holds_fails_its_notebook(mlflow_store, tmp_path, monkeypatch):
    from nbclient.exceptions import CellExecutionError

    # Ten iterations leave He's net at chance: the claim cell must catch it.
    monkeypatch.setitem(
        CI_SETTINGS, "initialization", {"ITERATIONS": 10, "SEED": 1, "LOG_MODEL": False}
    )
    with pytest.raises(CellExecutionError, match="AssertionError"):
        execute("initialization", mlflow_store, tmp_path)
