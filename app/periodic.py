"""Daily tasks at a local time, run once per local date.

rq-scheduler reads cron strings in UTC (or the process's own zone), so a
daily task at 05:00 in a zone with daylight saving would drift by an hour
twice a year. Instead the scheduler calls the task every minute and the
task runs when the local time has reached its hour and no run is recorded
for today's local date. The unique (task, date) row is the claim, so two
workers or two schedulers run it once. After an outage, the day's run
happens as soon as the service is back, if that is within CATCH_UP of the
set time. So a service first started in the evening sends no digest until
the next morning.
"""

import logging
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import PeriodicRun, utcnow

log = logging.getLogger(__name__)
# How long after its local time a daily task that did not run still runs that day.
CATCH_UP = timedelta(hours=4)


def parse_local_time(value, setting):
    """Return a datetime.time from "HH:MM", or raise ValueError naming the setting."""
    try:
        hours, minutes = (int(part) for part in value.split(":"))
        return time(hours, minutes)
    except (ValueError, TypeError):
        raise ValueError(f"{setting}: expected a local time as HH:MM, got {value!r}") from None


def local_now(now=None):
    return (now or utcnow()).astimezone(ZoneInfo(current_app.config["TIMEZONE"]))


def run_daily(task, setting, func, now=None):
    """Run `func(now)` if the local time is at most CATCH_UP past config[setting] and `task` has not run today.

    Returns func's result, or None when it was not due or another process
    claimed today's run. The claim is written in func's transaction and
    commits with func's first commit, so a process that dies before that
    leaves the day's run to the next call.
    """
    now = now or utcnow()
    at = parse_local_time(current_app.config[setting], setting)
    local = local_now(now)
    late = timedelta(hours=local.hour - at.hour, minutes=local.minute - at.minute)
    if not timedelta(0) <= late < CATCH_UP:
        return None
    period = local.date().isoformat()
    if db.session.execute(
        db.select(PeriodicRun.id).where(PeriodicRun.task == task, PeriodicRun.period == period)
    ).first() is not None:
        return None
    claim = PeriodicRun(task=task, period=period, started_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(claim)
    except IntegrityError:
        db.session.rollback()
        return None
    log.info("Daily task %s: running for %s (%s)", task, period, current_app.config["TIMEZONE"])
    result = func(now)
    claim.finished_at = utcnow()
    claim.result = result if isinstance(result, dict) else {"result": result}
    db.session.commit()
    return result
