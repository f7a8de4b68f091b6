"""Names shared by every layer."""

DEFAULT_STUDENT = "student"  # the student of `student.model`, as opposed to one of `grid.students`

PLOTS_FOLDER = "plots"  # plots are linked as plots/<name>, beside the report, as MLflow logs them (report/plots/)
