"""How long ``kedro run`` takes to end once its study is done: with the fast exit and with Python's own.

Each run is a real ``kedro run`` in a fresh copy of the project's config (empty data/ and mlflow.db), once
as it ships (``distillation_studies/fast_exit.py``: atexit callbacks, flushed output, ``os._exit``) and once
with ``DISTILLATION_STUDIES_FULL_EXIT=1`` (the interpreter frees every module before the process ends),
alternating. Printed per run: the wall time and the time from the run's last output line to its exit.
Run it alone: other work on the machine shows up in both figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distillation_studies.fast_exit import FULL_EXIT_ENV
from parallel_study import KEDRO, fresh_project  # benchmarks/parallel_study.py, beside this script


def timed_run(env: str, full_exit: bool) -> tuple[float, float]:
    """(wall s, s from the last output line to the exit) of one ``kedro run --env env``."""
    with tempfile.TemporaryDirectory(prefix="process_exit_") as folder:
        project = fresh_project(Path(folder))
        variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
        variables.pop(FULL_EXIT_ENV, None)
        if full_exit:
            variables[FULL_EXIT_ENV] = "1"
        started = time.perf_counter()
        run = subprocess.Popen([KEDRO, "run", f"--env={env}"], cwd=project, env=variables, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        last_line, lines = started, []
        for line in run.stdout:
            last_line = time.perf_counter()
            lines.append(line)
        if run.wait() != 0:
            sys.exit(f"kedro run --env={env} failed:\n{''.join(lines)[-4000:]}")
        ended = time.perf_counter()
        return ended - started, ended - last_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="tiny", help="Kedro environment (default: tiny)")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(f"kedro run --env={args.env}, {os.cpu_count()} cores visible, python {sys.version.split()[0]}")
    ending: dict[str, list[float]] = {"fast exit": [], "full exit": []}
    walls: dict[str, list[float]] = {"fast exit": [], "full exit": []}
    for pair in range(1, args.pairs + 1):
        for name in ending:
            wall, end = timed_run(args.env, full_exit=name == "full exit")
            walls[name].append(wall)
            ending[name].append(end)
            print(f"pair {pair}, {name}: wall {wall:6.2f} s, last output line to exit {end:5.2f} s", flush=True)
    for name in ending:
        print(f"{name}: median wall {statistics.median(walls[name]):.2f} s, median last line to exit {statistics.median(ending[name]):.2f} s")


if __name__ == "__main__":
    main()
