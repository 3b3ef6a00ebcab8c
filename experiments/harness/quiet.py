"""Quiet by default: the commands hide TensorFlow's, absl's and MLflow's INFO lines.

Without this, a run prints a dozen lines (oneDNN, CUDA drivers, CPU features, XLA service,
"Creating initial MLflow database tables") before its result. `--verbose`, or the variable
`EXPERIMENTS_VERBOSE=1`, shows them all again; so does setting `TF_CPP_MIN_LOG_LEVEL` or
`MLFLOW_LOGGING_LEVEL` yourself. Warnings and errors still show: TensorFlow's native
WARNING/ERROR lines (level 1 hides INFO only), Python warnings, MLflow's WARNING.

TensorFlow writes its first lines through absl before absl's log level is read, so no
variable hides them: TensorFlow is imported once with the native stderr (file descriptor 2)
captured, and every captured line that is not one of those start-up notices is written
back. Standard library only.
"""

from __future__ import annotations

import contextlib
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
    the processes it starts; call before either is imported."""
    if verbose_requested(verbose):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def import_tensorflow_quietly(verbose: bool = False) -> None:
    """Import TensorFlow and Keras and look up the devices, without their start-up notices."""
    if verbose_requested(verbose) or "tensorflow" in sys.modules:
        return
    with _native_stderr_filtered():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe, and its error line, happen here


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
