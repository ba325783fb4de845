"""nbgrader's course layout mapped onto this repository (see README, "Assignments")."""
from pathlib import Path

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = str(Path(__file__).resolve().parent)
c.CourseDirectory.source_directory = "solutions"    # source notebooks: reference solutions + all tests
c.CourseDirectory.release_directory = "assignments"  # student versions, made by `make assignments`
# Instructor-only files beside each source notebook are never copied into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "cases.py", "reference.py", "locale"]
c.CourseDirectory.course_id = "when-nets-wont-train"
# The hidden training tests take a few seconds; leave room on a slow or busy machine.
c.Execute.timeout = 120
# nbgrader's exchange on this machine (release/collect/feedback). Without this line nbgrader makes
# /usr/local/share/nbgrader/exchange on first use; create it once as in the README ("The exchange").
c.Exchange.root = "/srv/nbgrader/exchange"
# Late submissions: the due date lives in the gradebook (`nbgrader db assignment add <a> --duedate=...`);
# the penalty comes from this plugin ('none' by default). Our grader uses the same setting.
# c.LateSubmissionPlugin.penalty_method = "zero"
# c.AssignLatePenalties.plugin_class = "latepolicy.OnePointPerDay"   # your own, in latepolicy.py here
