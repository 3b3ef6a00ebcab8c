"""The sweep: grids of experiments run in worker processes (or on Ray), tracked in MLflow.

`python -m experiments.sweep --help` tells how to use it. The rooms, in the order a config
passes through them: `plan` (grid file -> validated configs, no TensorFlow), `cli` (the
command line and `--dry-run`), `run` (the `Sweep` of one invocation: resume, parent run,
stop signals), `store` (what MLflow already holds: resume, stale runs), `pool` (the loop
both pools share, and which one), `local_pool` / `ray_pool` (worker processes here, or Ray
tasks), `worker` (one config in a worker), `report` (table, CSV, parent-run artifacts) and
`plots` (its figures).
"""
