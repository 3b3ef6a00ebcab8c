"""The sweep: grids of experiments run in worker processes (or on Ray), tracked in MLflow.

`python -m experiments.sweep --help` tells how to use it. The rooms, in the order a config
passes through them: `plan` (grid file -> validated configs, no TensorFlow), `store` (what
MLflow already holds: resume, stale runs), `cli` (the command and the `Sweep` that drives
one invocation), `local_pool` / `ray_pool` (where configs run), `plots` (the parent run's
figures).
"""
