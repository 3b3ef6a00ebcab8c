"""Regenerate the README's MLflow UI screenshots from real runs, in headless Chromium.

    python docs/screenshots.py                        # real sweep in a temp store -> docs/img/
    python docs/screenshots.py --tracking-uri sqlite:///mlflow.db   # your own store instead

It fills a temporary store with the `course` sweep preset's initialization and
regularization configs (the course's settings; several minutes on two cores), then runs the
browser tests
of tests/sweep/test_mlflow_ui.py against it with MLFLOW_UI_STORE and MLFLOW_UI_SCREENSHOTS set:
the images are exactly what those tests saw. The two README images are written to
docs/img/ as 256-colour PNGs (small enough to commit; the UI has few colours).

Needs Debian's `chromium` and `chromium-driver` (the tests never download a browser).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
IMAGES = ("runs_table.png", "gradient_heatmap.png")
MAX_BYTES = 300_000


def fill(root: Path, preset: str, experiments: list[str]) -> str:
    """Run the sweep preset into a fresh sqlite store under `root`; returns its URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    command = [sys.executable, "-m", "experiments.sweep", "--preset", preset]
    for experiment in experiments:
        command += ["--experiment", experiment]
    command += ["--tracking-uri", uri, "--out", str(root / "sweep_results")]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run(command, cwd=root, env=env, check=True)  # artifacts: <root>/mlruns
    return uri


def shoot(uri: str, shots: Path) -> None:
    """The browser tests, pointed at `uri`, saving their screenshots in `shots`."""
    env = {**os.environ, "MLFLOW_UI_STORE": uri, "MLFLOW_UI_SCREENSHOTS": str(shots)}
    command = [sys.executable, "-m", "pytest", "tests/sweep/test_mlflow_ui.py", "-q"]
    command += ["-p", "no:cacheprovider", "-k", "runs_table or run_page or heatmap"]
    subprocess.run(command, cwd=REPO, env=env, check=True)


def publish(shots: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in IMAGES:
        image = Image.open(shots / name).convert("RGB")
        small = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(out / name, optimize=True)
        size = (out / name).stat().st_size
        print(f"{out / name}: {image.width}x{image.height}, {size / 1000:.0f} KB")
        if size > MAX_BYTES:
            print(f"warning: {name} is over {MAX_BYTES // 1000} KB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", help="an existing store to photograph instead")
    parser.add_argument("--preset", default="course", help="sweep preset (default: course)")
    parser.add_argument(
        "--experiment",
        action="append",
        help="only this experiment's configs; repeatable (default: initialization, regularization)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlflow_screenshots_") as tmp:
        root = Path(tmp)
        experiments = args.experiment or ["initialization", "regularization"]
        uri = args.tracking_uri or fill(root, args.preset, experiments)
        shoot(uri, root / "shots")
        publish(root / "shots", args.out)


if __name__ == "__main__":
    main()
