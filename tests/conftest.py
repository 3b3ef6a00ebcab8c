import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Processes the tests start (CLIs, benchmark scripts, a Ray head whose workers import test
# modules) find the shared `support` module as pytest's `pythonpath` setting lets the tests
# themselves. The checkout comes first: tests/reg_callbacks/ and tests/experiments/ would
# otherwise stand in for the packages as empty namespace packages.
_TESTS = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(_TESTS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [_REPO, _TESTS, os.environ.get("PYTHONPATH")])
)

import mlflow  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def mlflow_store(tmp_path, monkeypatch):
    """Every test gets its own MLflow store (and artifact root) under tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is ./mlruns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)
