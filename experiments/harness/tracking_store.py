"""Where the MLflow tracking store is, and whether it can work, before anything is run.

MLflow meets a store that cannot work late and loudly: a file that is not an SQLite
database, or an unknown URI scheme, is a traceback after MLflow's import, and an SQLite path
that is a directory is ~105 s of "unable to open database file" retries. These checks read
the URI and at most a file's first 16 bytes, so a command refuses such a store at once, in
one line, with what to pass instead. Standard library only.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path

# The tracking-store schemes MLflow itself knows; plugins add theirs as entry points.
MLFLOW_SCHEMES = (
    "",
    "file",
    "sqlite",
    "postgresql",
    "mysql",
    "mssql",
    "http",
    "https",
    "databricks",
    "databricks-uc",
    "uc",
)
SQLITE_HEADER = b"SQLite format 3\x00"
USE_INSTEAD = (
    "use sqlite:///PATH/mlflow.db, http(s)://HOST:PORT (an MLflow server) or "
    "postgresql+psycopg2://... (a database)"
)


def resolve_tracking_uri(explicit: str | None = None) -> str | None:
    """`--tracking-uri`, else `$MLFLOW_TRACKING_URI`, else MLflow's default `sqlite:///mlflow.db`.

    Returns None when MLflow itself must decide (an old `./mlruns` file store is present).
    """
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if any(Path("mlruns").glob("[0-9]*/meta.yaml")):
        return None
    return f"sqlite:///{os.path.abspath('mlflow.db')}"


def sqlite_path(uri: str | None) -> str | None:
    """The database file of a `sqlite:///...` URI (relative or absolute), else None."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = urllib.parse.unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    return None if path in ("", ":memory:") else path


def check_tracking_uri(uri: str | None) -> None:
    """Raise a one-line ValueError if the store at `uri` cannot work; None passes.

    Refused: an unknown scheme (MLflow's own and installed plugins' are known), an SQLite
    path that is a directory, a file that is not an SQLite database, or a database whose
    folder does not exist.
    """
    if not uri:
        return
    scheme = urllib.parse.urlsplit(uri).scheme.lower().partition("+")[0]
    if len(scheme) == 1:  # a Windows drive letter: a file-store path
        scheme = ""
    if scheme not in MLFLOW_SCHEMES and scheme not in _plugin_schemes():
        raise ValueError(f"unknown tracking URI scheme {scheme!r} in {uri!r}; {USE_INSTEAD}.")
    path = sqlite_path(uri)
    if path is None:
        return
    if os.path.isdir(path):
        raise ValueError(
            f"the SQLite tracking store {path} is a directory, not a database file; "
            f"name a file in it, e.g. sqlite:///{os.path.join(path, 'mlflow.db')}."
        )
    if os.path.isfile(path):
        try:
            with open(path, "rb") as file:
                header = file.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise ValueError(f"cannot read the SQLite tracking store {path}: {exc}") from None
        if header and header != SQLITE_HEADER:
            raise ValueError(
                f"the tracking store {path} is not an SQLite database; name a new file "
                "(MLflow creates it) or an MLflow database."
            )
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(
            f"the folder of the SQLite tracking store {path} does not exist: {folder}."
        )


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {entry.name.lower() for entry in entry_points(group="mlflow.tracking_store")}
