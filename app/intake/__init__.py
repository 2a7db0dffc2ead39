"""Intake: the completion hook that turns a report into a stored run."""

from app.intake.routes import bp  # noqa: F401
from app.intake import ping  # noqa: F401  (registers the /ping/ routes on bp)
from app.intake import tools  # noqa: F401  (registers the Duplicati and restic hooks on bp)
