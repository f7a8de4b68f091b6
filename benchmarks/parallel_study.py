"""Wall time of one study run three ways: sequential with 1 torch thread, on a local Dask cluster of
N workers x 1 torch thread, and sequential with N torch threads; then the ratios.

Each run is a real ``kedro run`` in a fresh copy of the project's config (empty data/ and mlflow.db),
so it pays what a user pays: start-up, data preparation, the teacher, every arm, the comparison and
the report, with MLflow tracking. Each run also prints Kedro's own pipeline time and its per-task
overhead estimate (wall time minus the arms' own training time, per task).

Run: .venv/bin/python benchmarks/parallel_study.py                # the default study, 2 workers
     .venv/bin/python benchmarks/parallel_study.py --env tiny     # a smoke run in seconds
     .venv/bin/python benchmarks/parallel_study.py --pairs 3      # sequential and Dask alternated, each pair's ratio
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
RUNNER = "distillation_studies.runner.DaskRunner"


def fresh_project(folder: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", folder)
    shutil.copytree(ROOT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    return folder


def timed_run(env: str | None, threads: int, runner_args: list[str]) -> dict[str, float]:
    """One ``kedro run`` in a new project copy: wall time, Kedro's pipeline time, summed arm training time."""
    with tempfile.TemporaryDirectory(prefix="parallel_study_") as folder:
        project = fresh_project(Path(folder))
        variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": str(threads)}
        command = [KEDRO, "run", *([f"--env={env}"] if env else []), *runner_args]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=project, env=variables, capture_output=True, text=True)
        wall = time.perf_counter() - started
        log = result.stdout + result.stderr
        if result.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{log[-4000:]}")
        pipeline = re.search(r"Pipeline execution completed successfully in ([\d.]+) sec", log)
        return {"wall_s": wall, "pipeline_s": float(pipeline.group(1)) if pipeline else float("nan"), **_arm_times(project)}


def _arm_times(project: Path) -> dict[str, float]:
    """Summed training time of the students and the teacher, and the number of arms, from the histories."""
    histories = list((project / "data" / "07_model_output").glob("**/history.json/*/history.json"))
    times = [json.loads(path.read_text())["summary"]["wall_time_s"] for path in histories]
    return {"arms": float(len(times)), "training_s": float(sum(times))}


def pairs(env: str | None, count: int, dask: list[str]) -> None:
    """Sequential and Dask runs one after the other, ``count`` times: the machine's speed drifts over minutes,
    so each Dask run is set against the sequential run just before it."""
    ratios = []
    for index in range(1, count + 1):
        sequential, parallel = timed_run(env, 1, [])["wall_s"], timed_run(env, 1, dask)["wall_s"]
        ratios.append(sequential / parallel)
        print(f"pair {index}: sequential {sequential:6.1f} s, dask {parallel:6.1f} s: {ratios[-1]:.2f}x", flush=True)
    print(f"dask against sequential over {count} pairs: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x, max {max(ratios):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None, help="Kedro environment (default: the base study)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=0, help="instead: N alternating sequential and Dask runs, and each pair's ratio")
    args = parser.parse_args()
    dask = ["--runner=" + RUNNER, "--runner-params", f"workers={args.workers},torch_threads=1"]
    ways = {
        "sequential, 1 thread": (1, []),
        f"dask, {args.workers} workers x 1 thread": (1, dask),
        f"sequential, {args.workers} threads": (args.workers, []),
    }
    print(f"study: {args.env or 'base'}, {os.cpu_count()} cores visible, python {sys.version.split()[0]}")
    if args.pairs:
        return pairs(args.env, args.pairs, dask)
    results = {}
    for name, (threads, runner_args) in ways.items():
        results[name] = timed_run(args.env, threads, runner_args)
        r = results[name]
        overhead = (r["wall_s"] - r["training_s"] / (args.workers if runner_args else 1)) / max(r["arms"], 1)
        print(
            f"{name:>32}: wall {r['wall_s']:7.1f} s  (pipeline {r['pipeline_s']:7.1f} s, "
            f"{int(r['arms'])} models trained in {r['training_s']:6.1f} s, ~{overhead:.1f} s other time per model)",
            flush=True,
        )
    base = results["sequential, 1 thread"]["wall_s"]
    for name, r in results.items():
        print(f"{name:>32}: {base / r['wall_s']:.2f}x the speed of sequential with 1 thread")


if __name__ == "__main__":
    main()
