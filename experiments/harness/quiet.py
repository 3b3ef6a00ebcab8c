"""Quiet by default: the commands hide TensorFlow's, absl's and MLflow's INFO lines.

Without this, a run prints a dozen lines (oneDNN, CUDA drivers, CPU features, XLA service,
"Creating initial MLflow database tables") before its result. `--verbose`, or the variable
`EXPERIMENTS_VERBOSE=1`, shows them all again; so does setting `TF_CPP_MIN_LOG_LEVEL` or
`MLFLOW_LOGGING_LEVEL` yourself. Warnings and errors still show: TensorFlow's native
WARNING/ERROR lines (level 1 hides INFO only), Python warnings, MLflow's WARNING.

TensorFlow writes its first lines through absl before absl's log level is read, so no
variable hides them: its first import runs with the native stderr (file descriptor 2)
captured, and every captured line that is not one of those start-up notices is written
back. Standard library only.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

VERBOSE_VARIABLE = "EXPERIMENTS_VERBOSE"
# The start-up notices of `import tensorflow, keras` and the first device lookup on a machine
# without a GPU; any other line captured meanwhile is written back.
_START_UP_NOISE = re.compile(
    r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog\(\)|"
    r"To enable the following instructions: |"
    r"E\d{4} .*cuda_platform\.cc:\d+\] failed call to cuInit)"
)


def verbose_requested(flag: bool = False) -> bool:
    return flag or os.environ.get(VERBOSE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def quiet_logs(verbose: bool = False) -> None:
    """Set the log levels of TensorFlow and MLflow (unless set already) for this process and
    the processes it starts, and filter TensorFlow's start-up notices out of its first import;
    call before either is imported."""
    if verbose_requested(verbose):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _QuietFirstImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietFirstImport())


class _QuietFirstImport(importlib.abc.MetaPathFinder):
    """Runs the first import of `tensorflow` and of `keras`, wherever it happens, with the
    native stderr filtered (imported only when a run needs them, so bad input still fails
    before TensorFlow loads). Otherwise the import is Python's own: the module's spec is the
    one the next finders give, its loader wrapped for the duration of the import."""

    names = {"tensorflow", "keras"}

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        self.names = self.names - {name}
        if not self.names:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _native_stderr_filtered():
            self.loader.exec_module(module)
            if module.__name__ == "tensorflow":
                module.config.list_physical_devices()  # the CUDA probe and its error line
        module.__loader__ = module.__spec__.loader = self.loader


@contextlib.contextmanager
def _native_stderr_filtered():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not _START_UP_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
