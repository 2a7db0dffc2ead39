"""Flask commands for schedules and silences."""

from app.extensions import db
from app.models import BackupJob, Silence, utcnow


def invoke(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def test_create_with_cron_schedule(app):
    result = invoke(app, "jobs", "create", "nightly-db", "--cron", "30 1 * * *", "--timezone", "Europe/Berlin",
                    "--grace", "1800", "--max-run", "7200")
    assert result.exit_code == 0, result.output
    with app.app_context():
        job = db.session.execute(db.select(BackupJob)).scalar_one()
        assert (job.schedule_cron, job.schedule_timezone, job.grace_seconds, job.max_run_seconds) == (
            "30 1 * * *", "Europe/Berlin", 1800, 7200)
        assert job.schedule_since is not None


def test_bad_schedule_names_the_option_and_writes_nothing(app):
    for args, option in (
        (("--cron", "99 * * * *"), "--cron"),
        (("--cron", "0 3 * * *", "--timezone", "Mars/Olympus"), "--timezone"),
        (("--cron", "0 3 * * *", "--interval", "3600"), "--cron"),
        (("--interval", "10"), "--interval"),
    ):
        result = invoke(app, "jobs", "create", "nightly-db", *args)
        assert result.exit_code == 2, result.output
        assert option in result.output, result.output
    with app.app_context():
        assert db.session.execute(db.select(BackupJob)).first() is None


def test_schedule_command_prints_next_expected_run(app):
    invoke(app, "jobs", "create", "files")
    result = invoke(app, "jobs", "schedule", "files", "--interval", "3600", "--grace", "600")
    assert result.exit_code == 0
    assert "next run expected at" in result.output
    result = invoke(app, "jobs", "schedule", "files")
    assert "no schedule" in result.output
    assert invoke(app, "jobs", "schedule", "nope", "--interval", "3600").exit_code == 1


def test_silence_add_and_end(app):
    invoke(app, "jobs", "create", "nightly-db")
    result = invoke(app, "silences", "add", "--job", "nightly-db", "--hours", "2", "--reason", "disk swap")
    assert result.exit_code == 0, result.output
    with app.app_context():
        silence = db.session.execute(db.select(Silence)).scalar_one()
        assert silence.reason == "disk swap"
        assert silence.ends_at > utcnow()
        silence_id = silence.id
    assert invoke(app, "silences", "end", str(silence_id)).exit_code == 0
    with app.app_context():
        assert db.session.get(Silence, silence_id).ends_at <= utcnow()
    assert invoke(app, "silences", "add", "--hours", "1").exit_code == 2
    assert invoke(app, "silences", "add", "--backend", "nope", "--hours", "1").exit_code == 1
