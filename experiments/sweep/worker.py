"""One config, run in whichever worker process a pool gives it: the same code for both pools.

`run_config` loads the topic, builds its config with the CLI's own coercion, calls the
topic's `run` under the sweep's parent run with the child tags, and turns whatever happens
into a `Result`: FINISHED, FAILED with the exception as its reason, or KILLED (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from experiments.harness.runner import SUMMARY_KEYS
from experiments.sweep.plan import Plan, PlannedConfig, load_experiment


@dataclass(frozen=True)
class WorkerSettings:
    tracking_uri: str | None
    parent_run_id: str
    sweep_name: str
    sweep_experiment: str  # MLflow experiment of the sweep, "sweep-<name>"
    sweep_experiment_id: str
    threads: int
    log_file: str | None = None
    log_model: bool = True  # off: handed to the topic's `run` like the tracking URI
    step_images: bool = True  # likewise


@dataclass
class Result:
    config: PlannedConfig
    status: str  # FINISHED, FAILED or KILLED
    seconds: float = 0.0
    reason: str = ""
    summary: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str | None:
        return self.summary.get("run_id")


def topic_experiments(plan: Plan) -> list[str]:
    """Experiments whose `run` takes no `experiment=`: their children live under their own."""
    return [e for e in plan.experiments() if not accepts_experiment(load_experiment(e).run)]


def accepts_experiment(run_fn: Callable) -> bool:
    """Whether an experiment's `run` takes `experiment=` (so children land in the sweep's)."""
    try:
        parameters = inspect.signature(run_fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "experiment" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    )


def run_config(config: PlannedConfig, settings: WorkerSettings) -> Result:
    """Run one config through its experiment's `run`; never raises (but for bugs here)."""
    from experiments.harness.cli import config_from_dict
    from experiments.sweep.plan import load_experiment
    from experiments.sweep.store import child_tags
    from reg_callbacks.tracking import tags_for_children_of

    started = time.perf_counter()
    status, reason, summary = "FINISHED", "", {}
    module = load_experiment(config.experiment)
    kwargs = {"tracking_uri": settings.tracking_uri, "parent_run_id": settings.parent_run_id}
    if not settings.log_model:
        kwargs["log_model"] = False
    if not settings.step_images:
        kwargs["step_images"] = False
    if accepts_experiment(module.run):
        kwargs["experiment"] = settings.sweep_experiment
    error: BaseException | None = None
    if "keras" in sys.modules:
        # Keras numbers auto-named layers per process; restart the count so that every run
        # of a topic logs the same grad_norm/<layer> keys, whichever worker ran it before.
        # Without the full garbage collection it would add to every config: Python's own
        # collector still runs, and a worker's models are freed when their run ends.
        sys.modules["keras"].utils.clear_session(free_memory=False)
    try:
        cfg = config_from_dict(module.Config, config.params, name=config.experiment)
        with tags_for_children_of(settings.parent_run_id, child_tags(settings.sweep_name, config)):
            summary = dict(module.run(cfg, **kwargs) or {})
    except KeyboardInterrupt as exc:
        status, reason, error = "KILLED", "interrupted (Ctrl-C)", exc
    except Exception as exc:
        status, reason, error = "FAILED", f"{type(exc).__name__}: {exc}", exc
        _log_traceback()
    seconds = time.perf_counter() - started
    summary = table_values(summary)
    try:
        summary["run_id"] = _record(config, settings, summary.get("run_id"), error)
    except Exception:  # the store is down: the result still reaches the table and the CSV
        _log_traceback()
    return Result(config, status, round(seconds, 3), " ".join(reason.split()), summary)


def _log_traceback() -> None:
    """The traceback to the workers' log; a full or broken log loses it, not the result
    (a worker dying here would run its config a second time)."""
    with contextlib.suppress(OSError):
        traceback.print_exc()
        sys.stderr.flush()


def table_values(summary: Mapping) -> dict:
    """The summary's numbers for the sweep's table.

    An experiment that trains one nested child per config (e.g. `gradients` with one init)
    reports it under a key; its numbers stand for the config's.
    """
    values = {key: summary[key] for key in SUMMARY_KEYS if key in summary}
    if "train_error" not in values:
        nested = [v for v in summary.values() if isinstance(v, Mapping) and "train_error" in v]
        if len(nested) == 1:
            values.update({k: nested[0][k] for k in SUMMARY_KEYS[1:] if k in nested[0]})
    return values


def _record(config, settings, run_id, error) -> str | None:
    """The config's run id; a FAILED run is created for a config that failed before its run."""
    from experiments.sweep import store

    if run_id is not None:
        return run_id
    client = store.client_for(settings.tracking_uri)
    found = store.find_child(
        client, _experiment_ids(client, settings, config), settings.parent_run_id, config
    )
    if found is not None:
        return found.run_id
    if error is None or isinstance(error, KeyboardInterrupt):
        return None
    from reg_callbacks.tracking import RunRecorder

    recorder = RunRecorder(
        settings.sweep_experiment,
        run_name=f"{config.experiment} {config.label}".strip(),
        params=config.params,
        tags=store.child_tags(settings.sweep_name, config),
        tracking_uri=settings.tracking_uri,
        parent_run_id=settings.parent_run_id,
    )
    recorder.__enter__()
    recorder.__exit__(type(error), error, None)  # FAILED with failure_reason
    return recorder.run_id


def _experiment_ids(client, settings: WorkerSettings, config: PlannedConfig) -> list[str]:
    from reg_callbacks.tracking import with_retries

    ids = [settings.sweep_experiment_id]
    topic = with_retries(client.get_experiment_by_name, config.experiment)
    if topic is not None:
        ids.append(topic.experiment_id)
    return ids
