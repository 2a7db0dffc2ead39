"""Intake: the completion hook that turns a report into a stored run."""

from app.intake.routes import bp  # noqa: F401
