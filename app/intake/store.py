"""Storing a validated report as a run."""

import dataclasses
import logging

from sqlalchemy.exc import IntegrityError

from flask import current_app

from app.extensions import db
from app.intake.text import tail, truncation_marker
from app.models import BackupRun, RunStart

log = logging.getLogger(__name__)


def store_run(job, report, received_at):
    """Store `report` as a run of `job` and commit; return (run id, created).

    A report whose run_id the job already sent is not stored again: the
    first run's id is returned with created False.
    """
    if report.client_run_id is not None:
        existing_id = _find_by_client_run_id(job.id, report.client_run_id)
        if existing_id is not None:
            return existing_id, False

    start = _take_start(job.id, report.client_run_id)
    if start is not None and report.started_at is None and start.started_at <= report.finished_at:
        report = dataclasses.replace(
            report,
            started_at=start.started_at,
            duration_seconds=(report.finished_at - start.started_at).total_seconds(),
        )
    if start is not None and start.log_tail:
        log_tail, cut = keep_tail(start.log_tail + (report.log_tail or ""))
        report = dataclasses.replace(report, log_tail=log_tail, log_truncated_bytes=report.log_truncated_bytes + cut)
    run = BackupRun(
        job_id=job.id,
        client_run_id=report.client_run_id,
        kind=report.kind,
        status=report.status,
        started_at=report.started_at,
        finished_at=report.finished_at,
        duration_seconds=report.duration_seconds,
        size_bytes=report.size_bytes,
        exit_code=report.exit_code,
        error=report.error,
        log_tail=report.log_tail,
        log_truncated_bytes=report.log_truncated_bytes,
        storage_backend=report.storage_backend,
        object_key=report.object_key,
        sha256=report.sha256,
        received_at=received_at,
    )
    db.session.add(run)
    if job.last_run_at is None or job.last_run_at < received_at:
        job.last_run_at = received_at
    # Keep the ids before the commit: reading them after it would reload
    # both rows, two extra queries on the hottest path.
    job_id = job.id
    try:
        db.session.flush()
        run_id = run.id
        db.session.commit()
    except IntegrityError:
        # Two requests with the same run_id raced; the other one was stored.
        db.session.rollback()
        existing_id = _find_by_client_run_id(job_id, report.client_run_id)
        if report.client_run_id is None or existing_id is None:
            raise
        return existing_id, False
    log.info("Run %s: stored for job %s (%s, %s)", run_id, job_id, report.kind, report.status)
    return run_id, True


def record_start(job, report, received_at):
    """Store a start report of `job` and commit; return the RunStart id.

    A second start with the same run id replaces the first one. So does a
    second start without a run id, as with healthchecks.io: the earlier run
    is taken as abandoned, so it cannot stay overdue forever.
    """
    job_id = job.id
    start = _find_start(job_id, report.client_run_id)
    if start is None:
        start = RunStart(job_id=job_id, client_run_id=report.client_run_id)
        db.session.add(start)
    start.started_at = report.started_at
    start.received_at = received_at
    start.overdue_reported_at = None
    start.log_tail = keep_tail(report.log_tail)[0] if report.log_tail else None
    try:
        db.session.flush()
        start_id = start.id
        db.session.commit()
    except IntegrityError:
        # The same run id started twice at once; the other request stored it.
        db.session.rollback()
        start_id = db.session.execute(
            db.select(RunStart.id).where(RunStart.job_id == job_id, RunStart.client_run_id == report.client_run_id)
        ).scalar_one()
    log.info("Run start %s: stored for job %s", start_id, job_id)
    return start_id


def append_start_log(job, client_run_id, text):
    """Add `text` to the log of the run still going on and commit; return False when there is none.

    The run is the start with `client_run_id`, or without one the latest
    start that had none, the same start its finish will take.
    """
    start = _find_start(job.id, client_run_id)
    if start is None:
        db.session.rollback()
        return False
    start.log_tail, _ = keep_tail((start.log_tail or "") + text)
    db.session.commit()
    return True


def keep_tail(text):
    """Return (text, cut bytes): the end of `text` within LOG_TAIL_MAX_BYTES, marked when cut."""
    text_tail, cut = tail(text, current_app.config["LOG_TAIL_MAX_BYTES"])
    if cut:
        text_tail = truncation_marker(cut) + text_tail
    return text_tail, cut


def _find_start(job_id, client_run_id):
    query = db.select(RunStart).where(RunStart.job_id == job_id)
    if client_run_id is None:
        query = query.where(RunStart.client_run_id.is_(None))
    else:
        query = query.where(RunStart.client_run_id == client_run_id)
    return db.session.execute(query.order_by(RunStart.started_at.desc()).limit(1)).scalar_one_or_none()


def _take_start(job_id, client_run_id):
    """Remove and return the start a finish belongs to, or None.

    With a run id, the start with that id; without one, the latest start
    that had none. The caller's commit makes the removal final.
    """
    start = _find_start(job_id, client_run_id)
    if start is not None:
        db.session.delete(start)
    return start


def _find_by_client_run_id(job_id, client_run_id):
    return db.session.execute(
        db.select(BackupRun.id).where(BackupRun.job_id == job_id, BackupRun.client_run_id == client_run_id)
    ).scalar_one_or_none()
