"""nbgrader's course layout mapped onto this repository (see README, "Assignments")."""
from pathlib import Path

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = str(Path(__file__).resolve().parent)
c.CourseDirectory.source_directory = "solutions"    # source notebooks: reference solutions + all tests
c.CourseDirectory.release_directory = "assignments"  # student versions, made by `make assignments`
# Instructor-only files beside each source notebook are never copied into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "cases.py", "reference.py"]
c.CourseDirectory.course_id = "when-nets-wont-train"
# The hidden training tests take a few seconds; leave room on a slow or busy machine.
c.Execute.timeout = 120
