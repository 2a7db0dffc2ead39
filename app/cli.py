"""Flask commands: jobs, users and the periodic schedule."""

import os
import secrets
import shlex

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import BackupJob, User

jobs_cli = AppGroup("jobs", help="Manage backup jobs.")
users_cli = AppGroup("users", help="Manage console users.")


@jobs_cli.command("create")
@click.argument("name")
@click.option("--description", default=None, help="Free text shown in the console.")
def create_job(name, description):
    """Create a job and print its hook token once, with a ready curl line."""
    name = name.strip()
    if not name or len(name) > 200:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="NAME")
    job, token = BackupJob.create(name, description=description)
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


def register_commands(app):
    app.cli.add_command(create_backup_alert_templates)
    app.cli.add_command(jobs_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(register_schedule)
