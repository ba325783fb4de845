"""The submission service (``python -m autograder serve``): students submit and read graded feedback
in seconds; instructors watch. See README, "The submission service"."""
