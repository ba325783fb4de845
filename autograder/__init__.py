"""The course's hardened autograder (see README, "Grading")."""
