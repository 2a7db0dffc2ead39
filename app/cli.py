"""Flask commands: jobs, users, API tokens and the periodic schedule."""

import os
import secrets
import shlex
from datetime import timedelta

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.intake.text import clean_text
from app.models import ApiToken, BackupJob, User, utcnow
from app.models.api_tokens import NAME_MAX_CHARS

jobs_cli = AppGroup("jobs", help="Manage backup jobs.")
users_cli = AppGroup("users", help="Manage console users.")
api_tokens_cli = AppGroup("api-tokens", help="Manage personal API tokens for /api/v1.")


def _schedule_options(command):
    options = [
        click.option("--cron", default=None, help="Expected schedule as a cron expression, e.g. '30 1 * * *'."),
        click.option("--timezone", "tz_name", default="UTC", show_default=True, help="IANA timezone the cron expression is read in."),
        click.option("--interval", type=click.IntRange(min=1), default=None, help="Expected schedule as an interval in seconds."),
        click.option("--grace", type=click.IntRange(min=0), default=None, help="Seconds a run may be late before it counts as missed."),
        click.option("--max-run", type=click.IntRange(min=1), default=None, help="Seconds a started run may take before it is overdue."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _check_schedule(cron, tz_name, interval):
    from app.monitoring.missed import validate_schedule

    try:
        validate_schedule(cron, tz_name, interval)
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        hint = {"schedule_cron": "--cron", "schedule_timezone": "--timezone", "schedule_interval_seconds": "--interval"}
        raise click.BadParameter(problem, param_hint=hint.get(field, field)) from None


@jobs_cli.command("create")
@click.argument("name")
@click.option("--description", default=None, help="Free text shown in the console.")
@_schedule_options
def create_job(name, description, cron, tz_name, interval, grace, max_run):
    """Create a job and print its hook token once, with a ready curl line."""
    name = name.strip()
    if not name or len(name) > 200:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="NAME")
    _check_schedule(cron, tz_name, interval)
    job, token = BackupJob.create(
        name, description=description, schedule_cron=cron, schedule_timezone=tz_name,
        schedule_interval_seconds=interval, grace_seconds=grace, max_run_seconds=max_run,
    )
    db.session.add(job)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(f"a job named {name!r} already exists") from None
    url = f"{current_app.config['BASE_URL'].rstrip('/')}/hooks/{token}"
    click.echo(f"Created job {job.id}: {job.name}")
    click.echo(f"Hook token (shown only now, store it safely): {token}")
    click.echo(f"Hook URL: {url}")
    click.echo("Report a run with:")
    body = '{"status": "success", "duration_seconds": 42, "size_bytes": 1048576}'
    click.echo(f"  curl -fsS -X POST -H 'Content-Type: application/json' -d {shlex.quote(body)} {shlex.quote(url)}")


@jobs_cli.command("rotate-token")
@click.argument("name")
def rotate_job_token(name):
    """Replace a job's hook token and print the new one; the old one stops working."""
    job = db.session.execute(db.select(BackupJob).where(BackupJob.name == name)).scalar_one_or_none()
    if job is None:
        raise click.ClickException(f"no job named {name!r}")
    token = job.rotate_token()
    db.session.commit()
    click.echo(f"New hook token for {job.name} (shown only now): {token}")


@jobs_cli.command("schedule")
@click.argument("name")
@_schedule_options
def schedule_job(name, cron, tz_name, interval, grace, max_run):
    """Set when a job is expected to report; without --cron or --interval, stop checking it for missed runs."""
    job = _job_named(name)
    _check_schedule(cron, tz_name, interval)
    job.schedule_cron, job.schedule_timezone, job.schedule_interval_seconds = cron, tz_name, interval
    job.grace_seconds, job.max_run_seconds = grace, max_run
    job.schedule_since = utcnow()
    db.session.commit()
    from app.monitoring.missed import next_expected

    expected = next_expected(job)
    if expected is None:
        click.echo(f"{job.name}: no schedule; it is not checked for missed runs")
    else:
        click.echo(f"{job.name}: next run expected at {expected[0].isoformat()}, missed after {expected[1].isoformat()}")


def _job_named(name):
    job = db.session.execute(db.select(BackupJob).where(BackupJob.name == name)).scalar_one_or_none()
    if job is None:
        raise click.ClickException(f"no job named {name!r}")
    return job


silences_cli = AppGroup("silences", help="Mute a job's or a storage backend's notifications for a while.")


@silences_cli.command("add")
@click.option("--job", "job_name", default=None, help="Name of the job to silence.")
@click.option("--backend", default=None, help="Name of the storage backend to silence.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 90), required=True, help="Length of the window from now.")
@click.option("--reason", default="", help="Shown with the silence, e.g. 'disk replacement'.")
def add_silence(job_name, backend, hours, reason):
    """Start a silence now: alerts are still recorded but not sent until it ends."""
    from app.models import Silence, StorageBackend

    if bool(job_name) == bool(backend):
        raise click.UsageError("give exactly one of --job and --backend")
    job_id = _job_named(job_name).id if job_name else None
    if backend and db.session.execute(db.select(StorageBackend.id).where(StorageBackend.name == backend)).first() is None:
        raise click.ClickException(f"no storage backend named {backend!r}")
    now = utcnow()
    silence = Silence(job_id=job_id, storage_backend=backend, starts_at=now, ends_at=now + timedelta(hours=hours),
                      reason=clean_text(reason)[:500], created_at=now)
    db.session.add(silence)
    db.session.commit()
    click.echo(f"Silence {silence.id}: {job_name or backend} until {silence.ends_at.isoformat()}")


@silences_cli.command("end")
@click.argument("silence_id", type=int)
def end_silence(silence_id):
    """End a silence now."""
    from app.models import Silence

    silence = db.session.get(Silence, silence_id)
    if silence is None:
        raise click.ClickException(f"no silence {silence_id}")
    silence.ends_at = min(silence.ends_at, utcnow())
    db.session.commit()
    click.echo(f"Silence {silence_id} ended at {silence.ends_at.isoformat()}")


@users_cli.command("ensure-admin")
def ensure_admin():
    """Create the first platform admin unless one exists.

    Takes BACKWATCH_ADMIN_EMAIL and BACKWATCH_ADMIN_PASSWORD, or generates a
    password and prints it once.
    """
    existing = db.session.scalar(db.select(User).where(User.is_platform_admin.is_(True)).limit(1))
    if existing is not None:
        click.echo(f"Platform admin exists: {existing.email}")
        return
    email = os.environ.get("BACKWATCH_ADMIN_EMAIL", "admin@example.com").strip().lower()
    password = os.environ.get("BACKWATCH_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    user = User(email=email, is_platform_admin=True)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    click.echo(f"Created platform admin {email}")
    if "BACKWATCH_ADMIN_PASSWORD" not in os.environ:
        click.echo(f"Generated password (shown only now): {password}")


@users_cli.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user a platform admin.")
@click.password_option()
def create_user(email, admin, password):
    """Create a console user."""
    user = User(email=email.strip().lower(), is_platform_admin=admin)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(f"a user with email {email!r} already exists") from None
    click.echo(f"Created user {user.email}")


@click.command("register-schedule")
@with_appcontext
def register_schedule():
    """Register the periodic jobs with rq-scheduler (safe to run again)."""
    from app.schedule import register_periodic_jobs

    for line in register_periodic_jobs():
        click.echo(line)


@click.command("create-backup-alert-templates")
@with_appcontext
def create_backup_alert_templates():
    """Create the email and SMS templates; never overwrite one an admin edited."""
    from app.notifications.templates import create_builtin_templates

    for name, action in create_builtin_templates():
        click.echo(f"{name}: {action}")


@api_tokens_cli.command("create")
@click.option("--email", required=True, help="Email of the user the token acts as.")
@click.option("--name", required=True, help="What the token is for, for example the script that uses it.")
@click.option("--expires-in-days", type=click.IntRange(1, 3650), default=None,
              help="Days until the token stops working. Without it, the token works until it is revoked.")
def create_api_token(email, name, expires_in_days):
    """Create an API token for a user and print it once."""
    user = db.session.execute(db.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    if user is None:
        raise click.ClickException(f"no user with email {email!r}")
    name = clean_text(name).strip()
    if not name or len(name) > NAME_MAX_CHARS:
        raise click.BadParameter(f"must be 1 to {NAME_MAX_CHARS} characters", param_hint="--name")
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row, token = ApiToken.create(user, name, expires_at=expires_at)
    db.session.add(row)
    db.session.commit()
    click.echo(f"Created API token {row.id} ({row.name}) for {user.email}")
    if expires_at is not None:
        click.echo(f"Expires at {expires_at.isoformat(timespec='seconds')}")
    click.echo(f"Token (shown only now, store it safely): {token}")
    base_url = current_app.config["BASE_URL"].rstrip("/")
    click.echo(f"Use it with: curl -H 'Authorization: Bearer {token}' {base_url}/api/v1/alerts")


@api_tokens_cli.command("revoke")
@click.argument("token_id", type=click.IntRange(1))
def revoke_api_token(token_id):
    """Revoke API token TOKEN_ID; requests with it are rejected from now on."""
    row = db.session.get(ApiToken, token_id) if token_id <= 2**31 - 1 else None
    if row is None:
        raise click.ClickException(f"no API token with id {token_id}; `flask api-tokens list` shows them")
    if not row.revoke():
        click.echo(f"API token {row.id} ({row.name}) was already revoked at {row.revoked_at.isoformat(timespec='seconds')}")
        return
    db.session.commit()
    click.echo(f"Revoked API token {row.id} ({row.name}) of {row.user.email}")


@api_tokens_cli.command("list")
@click.option("--email", default=None, help="Only the tokens of this user.")
def list_api_tokens(email):
    """List API tokens with their status; the tokens themselves are not stored."""
    query = db.select(ApiToken).join(User).order_by(ApiToken.id)
    if email:
        query = query.where(User.email == email.strip().lower())
    now = utcnow()
    for row in db.session.execute(query).scalars():
        last_used = row.last_used_at.isoformat(timespec="seconds") if row.last_used_at else "never"
        expires = row.expires_at.isoformat(timespec="seconds") if row.expires_at else "never"
        click.echo(f"{row.id}\t{row.user.email}\t{row.name}\t{row.status(now)}\tlast used {last_used}\texpires {expires}")


def register_commands(app):
    app.cli.add_command(create_backup_alert_templates)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(api_tokens_cli)
    app.cli.add_command(register_schedule)
    app.cli.add_command(silences_cli)
