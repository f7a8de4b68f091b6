"""Names shared by every layer."""

DEFAULT_STUDENT = "student"  # the student of `student.model`, as opposed to one of `grid.students`
