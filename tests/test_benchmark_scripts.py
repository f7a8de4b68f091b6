"""The benchmark scripts still run against the code they measure (smoke runs on tiny configs; no timing).

``benchmarks/search_vs_grid.py`` once broke when ``recommend_method`` took a new argument, and the break
showed only at the end of a 40-minute grid."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

def test_search_vs_grid_runs_on_the_tiny_search_and_prints_its_verdict():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "search_vs_grid.py"), "--env", "search_tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("same rank-1 group as the grid: ") and last.endswith("of optimiser steps"), last


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg", "KEDRO_DISABLE_TELEMETRY": "1"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_background_thread_prints_both_walls_and_their_ratio():
    out = _run("background_thread.py", "--arms", "2", "--epochs", "2")
    assert "arms, writes in line:" in out and "arms, writes in a background thread:" in out and out.rstrip().endswith("x)")


def test_study_overhead_details_every_timed_call_and_catalog_io_per_dataset():
    out = _run("study_overhead.py", "--arms", "3", "--detail")
    assert "every timed call over 0.05 s (own time, calls):" in out
    assert "outside the training loops:" in out and "per-arm time outside the training loops:" in out


def test_parallel_study_pairs_alternate_sequential_and_dask_runs_and_print_their_ratios():
    out = _run("parallel_study.py", "--env", "tiny", "--pairs", "1")
    assert "pair 1: sequential" in out and "dask against sequential over 1 pairs: median" in out


def test_process_exit_times_both_exits_of_a_real_kedro_run():
    out = _run("process_exit.py", "--pairs", "1")
    assert "pair 1, fast exit: wall" in out and "pair 1, full exit: wall" in out
    assert "full exit: median wall" in out.splitlines()[-1]
