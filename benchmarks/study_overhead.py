"""Where a study's wall time goes, and how the time outside training grows with its number of arms.

For each N of ``--arms``, runs a study of N tiny arms (``conf/tiny``'s data, teacher and student, methods
ce/kd/fitnet, N/3 seeds) with a real Kedro session in a fresh copy of the project's config (empty
data/ and mlflow.db, the default sequential runner, MLflow tracking on), in a child process of its
own. Timers are wrapped around stable public entry points in that process only (no timing code in
src/): the training loop (``learning.training.train``, wherever it was imported), every public method
of ``mlflow.MlflowClient`` and the public functions of ``mlflow``, ``mlflow.pytorch`` and
``mlflow.pyfunc``, Kedro's ``DataCatalog.load``/``save``, ``Node.run``, ``KedroSession.create``, the config loader, the
project's hooks (``settings.HOOKS``) and the pipeline registry.
Each timed call counts only its own time (a call inside another timed call is subtracted from it), so
the parts add up to the wall time. What no timer covers is Kedro's own work: the runner, pluggy, the
session's run outside the timed calls. Printed per N: the wall time and its parts, the time outside the
training loops per arm, the MLflow calls that were made most often, and at the end the per-arm
overhead of each N against the smallest N.

With ``--default-study`` it times the default study (conf/base: its data, teacher, students and epochs)
the same way instead, for the share of its wall time spent outside the training loops.

Run: .venv/bin/python benchmarks/study_overhead.py --arms 30 300      # minutes; --arms 6 for a smoke run
     .venv/bin/python benchmarks/study_overhead.py --default-study    # about a minute; --detail: every timed call
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("ce", "kd", "fitnet")
ENV = "overhead"


class Timers:
    """Exclusive wall time per category of the main thread's timed calls, and call counts per name."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.own: Counter[str] = Counter()  # the main thread's exclusive seconds per name
        self.background: Counter[str] = Counter()  # seconds of timed calls on other threads (they overlap)
        self._local = threading.local()

    def wrap(self, category: str, name: str, function: Callable) -> Callable:
        if getattr(function, "_timed", False):
            return function

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack = self._local.__dict__.setdefault("stack", [])
            stack.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                inner = stack.pop()
                if threading.current_thread() is threading.main_thread():
                    self.seconds[category] += elapsed - inner
                    self.own[name] += elapsed - inner
                else:
                    self.background[category] += elapsed - inner
                self.calls[name] += 1
                if stack:
                    stack[-1] += elapsed

        timed._timed = True  # type: ignore[attr-defined]
        return timed


def _public_functions(module: Any) -> list[str]:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return [n for n in names if callable(getattr(module, n, None)) and not isinstance(getattr(module, n), type)]


def install_timers(timers: Timers) -> None:
    """Wrap the entry points of every tool; call after the project's modules are imported."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.pytorch
    from kedro.io import DataCatalog
    from kedro.pipeline.node import Node

    import distillation_studies.pipeline_registry as registry
    from distillation_studies.learning import training

    for name in [n for n in vars(mlflow.MlflowClient) if not n.startswith("_") and callable(getattr(mlflow.MlflowClient, n))]:
        setattr(mlflow.MlflowClient, name, timers.wrap("MLflow", f"MlflowClient.{name}", getattr(mlflow.MlflowClient, name)))
    for module in (mlflow, mlflow.pytorch, mlflow.pyfunc):
        for name in _public_functions(module):
            setattr(module, name, timers.wrap("MLflow", f"{module.__name__}.{name}", getattr(module, name)))
    for operation in ("load", "save"):
        setattr(DataCatalog, operation, _by_dataset(timers, operation, getattr(DataCatalog, operation)))
    from kedro.framework.project import settings

    loader = settings.CONFIG_LOADER_CLASS
    loader.__getitem__ = timers.wrap("Kedro: reading config", "config loader", loader.__getitem__)
    for hooks in settings.HOOKS:  # the project's hooks: their own Python (their MLflow calls count as MLflow)
        for name in [n for n in dir(hooks) if n.startswith(("before_", "after_", "on_"))]:
            setattr(hooks, name, timers.wrap(f"hooks: {type(hooks).__name__} (own work)", f"{type(hooks).__name__}.{name}", getattr(hooks, name)))
    registry.register_pipelines = timers.wrap("Kedro: building the pipelines", "register_pipelines", registry.register_pipelines)
    _wrap_nodes(timers, Node)
    # The loop is imported by name into the node modules: replace every reference to it.
    loop = training.train
    timed_loop = timers.wrap("training loops", "train", loop)
    for module in [m for n, m in list(sys.modules.items()) if n.startswith("distillation_studies") and m is not None]:
        for name, value in list(vars(module).items()):
            if value is loop:
                setattr(module, name, timed_loop)


def _by_dataset(timers: Timers, operation: str, method: Callable) -> Callable:
    """``DataCatalog.load``/``save`` timed under a name per kind of dataset (an arm's namespace as ``*``)."""

    def timed(catalog: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        parts = name.split(".")
        kind = ".".join(["students", "*", *parts[3:]]) if parts[0] == "students" and len(parts) > 3 else name
        return timers.wrap("catalog I/O", f"DataCatalog.{operation} {kind}", method)(catalog, name, *args, **kwargs)

    return timed


def _wrap_nodes(timers: Timers, node_class: type) -> None:
    """A node's own work (what its function does outside the timed tools), by pipeline: the report
    nodes, the evaluation nodes (test metrics, latency, FLOPs) and the others."""
    run = node_class.run

    def category(node: Any) -> str:
        module = getattr(node.func, "__module__", "")
        if "report" in node.name:
            return "report (node work)"
        if ".evaluation." in module:
            return "evaluation nodes (test metrics, latency)"
        return "other node work"

    def timed_run(self: Any, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        return timers.wrap(category(self), "Node.run", run)(self, inputs)

    node_class.run = timed_run


def import_all_project_modules() -> None:
    import pkgutil

    import distillation_studies

    for info in pkgutil.walk_packages(distillation_studies.__path__, "distillation_studies."):
        if not info.name.endswith("__main__"):
            __import__(info.name)


def study_parameters(arms: int) -> dict[str, Any]:
    """conf/tiny with methods ce, kd, fitnet and arms / 3 seeds."""
    import yaml

    tiny = yaml.safe_load((ROOT / "conf" / "tiny" / "parameters.yml").read_text())
    tiny["methods"] = {name: tiny["methods"][name] for name in METHODS}
    tiny["seeds"] = list(range(max(1, arms // len(METHODS))))
    return tiny


def fresh_project(folder: Path, arms: int) -> str:
    """pyproject.toml and conf/ (no local) copied, plus conf/overhead with the study of ``arms`` arms
    (none for ``arms`` 0: the default study); returns the environment to run."""
    import yaml

    shutil.copy(ROOT / "pyproject.toml", folder)
    shutil.copytree(ROOT / "conf", folder / "conf", ignore=shutil.ignore_patterns("local"))
    (folder / "conf" / "local").mkdir()
    (folder / "src").mkdir()
    if not arms:
        return "local"
    (folder / "conf" / ENV).mkdir()
    (folder / "conf" / ENV / "parameters.yml").write_text(yaml.safe_dump(study_parameters(arms)))
    return ENV


def measure(arms: int, threads: int) -> dict[str, Any]:
    """One study in this process (the child), timed; returns the figures as a dict."""
    started = time.perf_counter()
    import torch
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    torch.set_num_threads(threads)
    timers = Timers()
    with tempfile.TemporaryDirectory(prefix="study_overhead_") as folder:
        env = fresh_project(Path(folder), arms)
        os.chdir(folder)
        bootstrap_project(Path(folder))  # before the timers: it configures settings (hooks, config loader)
        import_all_project_modules()
        install_timers(timers)
        imported = time.perf_counter() - started
        session = timers.wrap("Kedro: session", "KedroSession.create", KedroSession.create)(project_path=Path(folder), env=env)
        with session:
            session.run()
        wall = time.perf_counter() - started
        trained = len(list(Path(folder, "data", "07_model_output").glob("**/history.json/*/history.json")))
    arms = arms or trained - 1  # the default study: its students
    timed = sum(timers.seconds.values())
    parts = {"start-up and imports": imported, **timers.seconds, "Kedro: runner and the rest (untimed)": wall - imported - timed}
    return {"arms": arms, "histories": trained, "wall_s": wall, "parts": parts, "calls": dict(timers.calls), "own": dict(timers.own), "background": dict(timers.background)}


def report(result: dict[str, Any], detail: bool = False) -> None:
    arms, wall, parts = result["arms"], result["wall_s"], result["parts"]
    training = parts.get("training loops", 0.0)
    print(f"\n{arms} arms ({result['histories']} models trained, teacher included): wall {wall:.1f} s")
    for name, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {name:<48} {seconds:8.2f} s {100 * seconds / wall:5.1f}%  {1e3 * seconds / arms:8.1f} ms/arm")
    print(f"  outside the training loops: {wall - training:.1f} s ({100 * (wall - training) / wall:.0f}% of the wall), "
          f"{(wall - training) / arms:.3f} s per arm")
    mlflow_calls = {k: v for k, v in result["calls"].items() if k.startswith(("MlflowClient", "mlflow"))}
    top = sorted(mlflow_calls.items(), key=lambda item: -item[1])[:8]
    print("  MLflow calls (most frequent): " + ", ".join(f"{name} {count}" for name, count in top))
    slowest = sorted(((k, v) for k, v in result["own"].items() if k in mlflow_calls), key=lambda item: -item[1])[:8]
    print("  MLflow calls (most time): " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in slowest))
    if detail:
        print("  every timed call over 0.05 s (own time, calls):")
        for name, seconds in sorted(result["own"].items(), key=lambda item: -item[1]):
            if seconds >= 0.05:
                print(f"    {name:<60} {seconds:7.2f} s {result['calls'][name]:>6}")
    if result["background"]:
        print("  timed calls on background threads (overlap the above): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in result["background"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", type=int, nargs="+", default=[30, 300], help="study sizes (multiples of 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--default-study", action="store_true", help="time the default study (conf/base) instead")
    parser.add_argument("--detail", action="store_true", help="also print every timed call over 0.05 s")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.default_study:
        args.arms = [0]
    if args.child is not None:
        print("RESULT " + json.dumps(measure(args.child, args.threads)))
        return
    variables = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    study = "the default study (conf/base)" if args.default_study else f"tiny arms ({', '.join(METHODS)}; conf/tiny's models and epochs)"
    print(f"{study}, sequential runner, torch threads {args.threads}, "
          f"{os.cpu_count()} cores visible, python {sys.version.split()[0]}")
    results = []
    for arms in args.arms:
        command = [sys.executable, __file__, "--child", str(arms), "--threads", str(args.threads)]
        done = subprocess.run(command, env=variables, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
        if done.returncode != 0 or line is None:
            sys.exit(f"{arms} arms failed:\n{(done.stdout + done.stderr)[-4000:]}")
        results.append(json.loads(line[len("RESULT "):]))
        report(results[-1], args.detail)
    first = results[0]
    base = (first["wall_s"] - first["parts"].get("training loops", 0.0)) / first["arms"]
    print("\nper-arm time outside the training loops:")
    for r in results:
        per_arm = (r["wall_s"] - r["parts"].get("training loops", 0.0)) / r["arms"]
        print(f"  {r['arms']:>5} arms: {per_arm:.3f} s/arm ({per_arm / base:.2f}x that at {first['arms']} arms)")


if __name__ == "__main__":
    main()
