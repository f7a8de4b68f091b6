"""kedro-viz as a user opens it: `kedro viz build` on a finished tiny study, read back from its JSON.

``students`` opens one level at a time (one node per arm, then an arm's seeds), node panels show each
node's own function, the report datasets carry the previews the side panel renders, nodes their tags,
and each environment has its own kedro-viz state (workflow panel, dataset statistics).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import KEDRO, copy_project, kedro_run
from tests.test_report_datasets import kedro_viz_pass, read_as_kedro_viz_shows

pytestmark = pytest.mark.e2e

TINY_METHODS = ("ce", "kd", "fitnet", "rkd")  # conf/tiny


@pytest.fixture(scope="module")
def viz(project) -> Path:
    """The ``build/`` folder of ``kedro viz build --include-previews`` over the tiny study (offline)."""
    env = {**os.environ, "KEDRO_ENV": "tiny", "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [KEDRO, "viz", "build", "--include-previews"], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return project / "build"


def _main(viz: Path) -> dict:
    return json.loads((viz / "api" / "main").read_text())


def _node_named(main: dict, name: str) -> dict:
    return next(node for node in main["nodes"] if node["name"] == name)


def _details(viz: Path, main: dict, name: str) -> dict:
    return json.loads((viz / "api" / "nodes" / _node_named(main, name)["id"]).read_text())


def test_students_opens_one_level_at_a_time(viz):
    """Collapsed, ``students`` emits one dataset per arm; opened, it holds one node per arm and nothing else;
    an arm opens into its seeds and the node that gathers them (issue 23)."""
    main = _main(viz)
    names = {node["id"]: node["name"] for node in main["nodes"]}
    pipelines = main["modular_pipelines"]
    students = pipelines["students"]
    assert {names[output] for output in students["outputs"]} == {f"students.{method}.seeds" for method in TINY_METHODS}
    assert {names[i] for i in students["inputs"]} >= {"teacher_model", "model_input", "data_summary"}
    assert not {names[i] for i in students["inputs"]} & {name for name in names.values() if name.startswith("students.")}
    assert {(child["type"], child["id"]) for child in students["children"]} == {
        ("modularPipeline", f"students.{method}") for method in TINY_METHODS
    }
    kd = {(child["type"], names.get(child["id"], child["id"])) for child in pipelines["students.kd"]["children"]}
    assert {name for kind, name in kd if kind == "modularPipeline"} == {"students.kd.seed_0", "students.kd.seed_1"}
    assert {name for kind, name in kd if kind == "task"} == {"gather_seeds"}
    assert "students.kd.seed_0.metrics" in {name for kind, name in kd if kind == "data"}


def test_node_panels_show_each_nodes_own_function_and_file(viz):
    main = _main(viz)
    tasks = [node for node in main["nodes"] if node["type"] == "task"]
    assert len({node["name"] for node in tasks}) >= 12
    for node in tasks:
        details = json.loads((viz / "api" / "nodes" / node["id"]).read_text())
        function = node["name"]
        function = {"collect_runs": "collect_study_runs", "collect_histories": "collect_study_histories"}.get(function, function)
        function = "noisy_input" if function.startswith("make_model_input_noise") else function
        assert details["filepath"].endswith("nodes.py"), (node["name"], details["filepath"])
        if not function.startswith("make_"):  # the label-subset nodes are named after their dataset
            assert details["code"].startswith(f"def {function}("), (node["name"], details["code"][:80])


def test_nodes_carry_teacher_students_and_report_tags(viz):
    main = _main(viz)
    tasks = {node["full_name"]: set(node["tags"]) for node in main["nodes"] if node["type"] == "task"}
    assert tasks["train_teacher"] == {"teacher"}
    assert tasks["students.kd.seed_0.distil_student"] == {"students"}
    assert tasks["students.kd.seed_0.evaluate_student"] == {"students"}
    assert tasks["collect_runs"] == tasks["collect_histories"] == tasks["students.kd.gather_seeds"] == {"students"}
    assert tasks["split_images"] == {"data"}
    assert tasks["build_report"] == {"report"}
    assert {tag["id"] for tag in main["tags"]} >= {"data", "teacher", "students", "report"}


def test_report_previews_as_the_page_the_table_as_people_read_it_and_plots_as_an_image(viz):
    main = _main(viz)
    page = _details(viz, main, "study_report_html")
    assert page["preview_type"] == "HTMLPreview"
    assert page["preview"].lstrip().lower().startswith("<!doctype html") and "Recommendation" in page["preview"]
    markdown = _details(viz, main, "study_report_md")
    shown, tags = read_as_kedro_viz_shows(markdown["preview"])
    assert markdown["preview_type"] == "HTMLPreview" and "Recommendation: test_accuracy (higher" in shown
    assert "h2" in tags
    italic = re.compile(r"<em>(.*?)</em>", re.S)  # only what the report itself sets in italics, no name's underscores
    assert italic.findall(kedro_viz_pass(markdown["preview"])) == italic.findall(markdown["preview"])
    assert "study_plots/" not in markdown["preview"]  # links the side panel cannot follow are left out

    table = _details(viz, main, "comparison_table")
    assert table["preview_type"] == "TablePreview"
    columns = table["preview"]["columns"]
    assert columns[:3] == ["arm", "seeds", "test acc (best val epoch), %"] and len(columns) < 20
    row = dict(zip(columns, table["preview"]["data"][0]))
    mean, half_width = row["test acc (best val epoch), %"].split(" ± ")
    assert len(mean.split(".")[1]) == 2 and len(half_width.split(".")[1]) == 2  # percentages to 2 decimals

    for name in ("study_plots", "comparison_plot"):
        plot = _details(viz, main, name)
        assert plot["preview_type"] == "ImagePreview"
        assert base64.b64decode(plot["preview"])[:8] == b"\x89PNG\r\n\x1a\n"


LOAD_GRAPH = """
import json, sys
from pathlib import Path
from kedro_viz.integrations.kedro.data_loader import load_data

_, pipelines, _ = load_data(Path.cwd(), env=sys.argv[1] or None)
print(json.dumps(sorted({node.namespace.split(".", 2)[1] + "/" + node.namespace.split(".", 2)[2]
                         for node in pipelines["__default__"].nodes
                         if (node.namespace or "").startswith("students.") and node.namespace.count(".") == 2})))
"""


@pytest.mark.parametrize(
    ("cli_env", "expected_runs"),
    [
        ("tiny", {f"{method}/seed_{seed}" for method in ("ce", "kd", "fitnet", "rkd") for seed in (0, 1)}),
        ("", None),  # conf/base: its own grid, not tiny's
    ],
)
def test_kedro_viz_run_env_draws_that_environments_study(project, cli_env, expected_runs):
    """``kedro viz run --env X`` builds the graph through kedro-viz's ``load_data(env=X)``, with no KEDRO_ENV set."""
    env = {key: value for key, value in os.environ.items() if key != "KEDRO_ENV"} | {"KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [str(Path(KEDRO).with_name("python")), "-c", LOAD_GRAPH, cli_env],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = set(json.loads(result.stdout.strip().splitlines()[-1]))
    if expected_runs is not None:
        assert runs == expected_runs
    else:
        assert not any(run.startswith("rkd/") for run in runs) and "kd__labels_100/seed_4" in runs


READ_VIZ_STATE = """
import json, sys
from pathlib import Path
from kedro_viz.integrations.kedro.data_loader import load_data
from kedro_viz.api.rest.responses.run_events import get_run_status_response
from kedro_viz.utils import _hash

_, pipelines, extras = load_data(Path.cwd(), env=sys.argv[1] or None, extra_params=json.loads(sys.argv[2]))
status = get_run_status_response()  # what the workflow panel's /api/run-status serves
drawn = {_hash(str(node)) for node in pipelines["__default__"].nodes}
print(json.dumps({
    "datasets": sorted(info.name for info in status.datasets.values()),
    "nodes_not_drawn": len(set(status.nodes) - drawn),
    "study_runs_rows": (extras["study_runs"].stats or {}).get("rows") if "study_runs" in extras else None,
}))
"""


def _viz_state(project: Path, cli_env: str, params: dict) -> dict:
    """What ``kedro viz run --env <cli_env> --params <params>`` serves of the last run: its workflow panel
    and dataset statistics."""
    env = {key: value for key, value in os.environ.items() if key != "KEDRO_ENV"} | {"KEDRO_DISABLE_TELEMETRY": "1"}
    result = subprocess.run(
        [str(Path(KEDRO).with_name("python")), "-c", READ_VIZ_STATE, cli_env, json.dumps(params)],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory) -> Path:
    """A project where ``tiny`` ran, then a one-epoch, one-seed default study (tracking off: not the point here)."""
    path = copy_project(tmp_path_factory.mktemp("two_studies"))
    for env_name, params in (("tiny", "tracking.enabled=false"), ("local", DEFAULT_STUDY_IN_SECONDS)):
        result = kedro_run(path, "--params", params, env_name=env_name)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return path


DEFAULT_STUDY_IN_SECONDS = "tracking.enabled=false,seeds=[0],teacher.training.epochs=1,student.training.epochs=1"
DEFAULT_STUDY_PARAMS = {"seeds": [0], "teacher": {"training": {"epochs": 1}}, "student": {"training": {"epochs": 1}}}  # its graph


def test_each_environment_has_its_own_kedro_viz_state(two_studies):
    """After a tiny run and then a default run, each view shows its own run, not the last one (issue 23)."""
    assert sorted(p.name for p in (two_studies / ".viz").iterdir()) == ["default", "tiny"]
    tiny, default = _viz_state(two_studies, "tiny", {}), _viz_state(two_studies, "", DEFAULT_STUDY_PARAMS)
    # Workflow panel: the datasets of that environment's run, and only nodes its graph draws.
    assert "students.rkd.seed_1.metrics" in tiny["datasets"] and not any("__labels_" in name for name in tiny["datasets"])
    assert "students.kd__labels_10__transfer.seed_0.metrics" in default["datasets"]
    assert not any(name.startswith("students.rkd.") for name in default["datasets"])
    assert tiny["nodes_not_drawn"] == default["nodes_not_drawn"] == 0
    # Dataset statistics: study_runs has one row per (arm, seed) of that study: 4 methods x 2 seeds, 6 arms x 1 seed.
    assert (tiny["study_runs_rows"], default["study_runs_rows"]) == (8, 6)
