"""Maintenance windows: alerts are recorded but not sent."""

from sqlalchemy import or_

from app.extensions import db
from app.models import Silence


def active_silence(alert, now):
    """Return the silence covering `alert` at `now` that ends last, or None."""
    subjects = []
    if alert.job_id is not None:
        subjects.append(Silence.job_id == alert.job_id)
    if alert.storage_backend is not None:
        subjects.append(Silence.storage_backend == alert.storage_backend)
    if not subjects:
        return None
    return db.session.execute(
        db.select(Silence)
        .where(or_(*subjects), Silence.starts_at <= now, Silence.ends_at > now)
        .order_by(Silence.ends_at.desc())
        .limit(1)
    ).scalar_one_or_none()
