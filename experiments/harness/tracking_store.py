"""Where the MLflow tracking store is, whether it can work, and creating it safely.

MLflow meets a store that cannot work late and loudly: a file that is not an SQLite
database, or an unknown URI scheme, is a traceback after MLflow's import, and an SQLite path
that is a directory is ~105 s of "unable to open database file" retries. `check_tracking_uri`
reads the URI and at most a file's first 16 bytes, so a command refuses such a store at once,
in one line, with what to pass instead (standard library only).

`prepare_store` is the step before MLflow opens an SQLite store. MLflow creates a new store's
tables in whichever process comes first, and several processes starting on one new store
all migrate it at once (alembic's "duplicate column name", a leftover `_alembic_tmp_` table
that breaks every later run). Here one process at a time holds an exclusive lock on
`<store>.lock` beside the store: it builds a new store under a temporary name and links it
into place only when complete (a full disk or a crash leaves no half-made store), and
checks an existing one can be written and is not left mid-migration. The others wait.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sqlite3
import time
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
    return sqlite_uri(os.path.abspath("mlflow.db"))


def sqlite_uri(path: str) -> str:
    """The `sqlite:///` URI of a database file: the path quoted, as SQLAlchemy unquotes it
    (a folder named `pct%41dir` or `what?dir` stays itself)."""
    return "sqlite:///" + urllib.parse.quote(path)


def sqlite_path(uri: str | None) -> str | None:
    """The database file of a `sqlite:///...` URI (relative or absolute), else None."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = urllib.parse.unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    return None if path in ("", ":memory:") or path.startswith("file::memory:") else path


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
        raise ValueError(f"unknown tracking URI scheme {scheme!r} in {clip(uri)!r}; {USE_INSTEAD}.")
    path = sqlite_path(uri)
    if scheme == "sqlite" and path is None:
        raise ValueError(
            f"the tracking URI {clip(uri)!r} names no database file (SQLite keeps it in memory "
            "and every run is lost at exit; is a variable in sqlite:///$DB unset?); name a "
            "file: sqlite:///PATH/mlflow.db."
        )
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


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to `limit` characters: what an error message quotes of user input."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class StoreFault(RuntimeError):
    """The SQLite store cannot work here now (read-only, full disk, left mid-migration,
    another process stuck creating it): one line, exit 1; nothing was written."""


LOCK_WAIT_SECONDS = 60.0  # longer than any migration of a new store takes on a slow disk
MIGRATION_LEFTOVER = "_alembic_tmp_"
_prepared: set[str] = set()


def prepare_store(uri: str | None) -> None:
    """Create or check the SQLite store at `uri` before MLflow opens it; other URIs pass.

    Once per process and store. Raises:
        StoreFault: the store cannot be created or written, was left mid-migration, or
            another process has held its lock for `LOCK_WAIT_SECONDS`.
    """
    path = sqlite_path(uri)
    if path is None or path in _prepared:
        return
    path = os.path.abspath(path)
    with _creation_lock(path):
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            _create(path)
        else:
            _check_existing(path)
    _prepared.add(path)


@contextlib.contextmanager
def _creation_lock(path: str):
    lock_path = path + ".lock"
    try:
        descriptor = os.open(
            lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except OSError as exc:
        raise StoreFault(
            f"cannot write in the folder of the tracking store {path} ({_why(exc)}); make "
            "the folder writable or name a store elsewhere with --tracking-uri."
        ) from None
    try:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreFault(
                        f"another process has been creating or migrating the tracking store "
                        f"{path} for {LOCK_WAIT_SECONDS:.0f} s (it holds {lock_path}); wait "
                        "for it to end, or end it, and run this again."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _create(path: str) -> None:
    """A new store, migrated under a temporary name and linked into place only when whole."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder, name = os.path.split(path)
    building = os.path.join(folder, f".{name}.creating-{os.getpid()}")
    try:
        # The artifact root MLflow's own client gives a new store outside a server.
        store = SqlAlchemyStore(sqlite_uri(building), DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH)
        store.engine.dispose()
        if os.path.exists(path):  # an empty file: replace it (we hold the lock)
            os.replace(building, path)
        else:
            os.link(building, path)  # never over a store a process without our lock made
    except FileExistsError:
        pass
    except Exception as exc:  # MLflow wraps OS and SQL errors in many types
        raise StoreFault(
            f"cannot create the tracking store {path}: {_why(exc)}; nothing was created "
            "(free space or make the folder writable, then run this again)."
        ) from None
    finally:
        for suffix in ("", "-journal", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(building + suffix)


def _check_existing(path: str) -> None:
    if not os.access(path, os.W_OK) or not os.access(os.path.dirname(path), os.W_OK):
        raise StoreFault(
            f"the tracking store {path} (or its folder) is read-only here; make both "
            "writable, or name another store with --tracking-uri."
        )
    try:
        # Read-write, never creating: a writer killed mid-transaction leaves a hot journal
        # that only a writable connection may roll back (read-only would refuse the store).
        connection = sqlite3.connect(
            f"file:{urllib.parse.quote(path)}?mode=rw", uri=True, timeout=30
        )
        try:
            leftovers = [
                name
                for (name,) in connection.execute("SELECT name FROM sqlite_master")
                if name.startswith(MIGRATION_LEFTOVER)
            ]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise StoreFault(f"cannot read the tracking store {path}: {exc}.") from None
    if leftovers:
        raise StoreFault(
            f"the tracking store {path} was left mid-migration (table {leftovers[0]} of a "
            "schema upgrade that did not finish); keep a copy of the file, then drop that "
            f"table and run `mlflow db upgrade {sqlite_uri(path)}`, or move the file aside "
            "to start a new store."
        )


# What SQLite's errors mean for a user, by the words of its message.
SQLITE_FAULTS = {
    "database or disk is full": "the disk holding it is full; free space and run this "
    "again (earlier runs are intact)",
    "attempt to write a readonly database": "it cannot be written: it is read-only, or it "
    "was deleted or replaced while in use; restore it (or let a new one be made) and run "
    "this again",
    "unable to open database file": "it cannot be opened: its folder is missing or not writable",
    "disk i/o error": "the disk failed to read or write it",
    "no such table": "it is not a complete MLflow store (deleted or replaced while in use?)",
}


STORE_ERRORS = {"MlflowException", "StoreFault", "SQLAlchemyError"}  # named: MLflow not imported


def quiet_store_errors() -> None:
    """MLflow logs each SQL error with its traceback before raising it: the command's one
    line says it (`--verbose` keeps MLflow's)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def store_error(exc: BaseException) -> BaseException | None:
    """The MLflow or database error in `exc`'s chain (what it was raised from or while
    handling), or None if it has none: then `exc` is not the store's fault."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {kind.__name__ for kind in type(exc).__mro__}
        if isinstance(exc, sqlite3.Error) or names & STORE_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def describe_store_error(exc: BaseException) -> str:
    """One line saying what a store error means and what to do."""
    text = " ".join(str(exc).split())
    if isinstance(exc, StoreFault):
        return text  # already says it
    for words, meaning in SQLITE_FAULTS.items():
        if words in text.lower():
            return f"{meaning} ({words})"
    first = str(exc).strip().splitlines()
    return clip(" ".join(first[0].split()) if first else type(exc).__name__, 300)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    text = " ".join(str(exc).split())
    if "disk is full" in text or "No space left" in text:
        return os.strerror(errno.ENOSPC)
    return clip(text, 300)


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {entry.name.lower() for entry in entry_points(group="mlflow.tracking_store")}
