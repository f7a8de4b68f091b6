"""The study run's description (what the MLflow UI shows on its page) is the recommendation."""

from __future__ import annotations

from distillation_studies.analysis.recommend import recommend
from distillation_studies.report.recommendation import recommendation_markdown
from distillation_studies.tracking.hooks import DESCRIPTION_TAG, MAX_DESCRIPTION, _log_report, description
from tests.analysis.test_recommend import make


class FakeStudyLog:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.texts: dict[str, str] = {}

    def log_text(self, text: str, file_name: str) -> None:
        self.texts[file_name] = text

    def set_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)


def test_the_saved_recommendation_becomes_the_study_runs_description():
    record = recommend(*make({"ce": [0.90, 0.91, 0.92], "kd": [0.95, 0.96, 0.97]})).to_dict()
    study = FakeStudyLog()
    _log_report(study, "recommendation", record)
    shown = study.tags[DESCRIPTION_TAG]
    assert shown == recommendation_markdown(record, heading=True)
    assert shown.startswith("## Recommendation: test_accuracy (higher is better)")
    assert "**kd**" in shown and "report/recommendation.json" in study.texts


def test_a_description_past_mlflows_limit_is_cut_at_a_line_and_says_where_the_rest_is():
    lines = [f"- candidate {i}: a long line of evidence about this arm and its seeds" for i in range(400)]
    shown = description("\n".join(lines))
    assert len(shown) <= MAX_DESCRIPTION < 8000
    kept, note = shown.split("\n\n(continued")
    assert kept.split("\n") == lines[: len(kept.split("\n"))]  # whole lines only, in order
    assert note == " in report/recommendation.json and report/study_report.md)"
    assert description("short") == "short"
