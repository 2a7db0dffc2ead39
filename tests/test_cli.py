"""Flask commands: jobs create, users ensure-admin."""

import re

from app.extensions import db
from app.models import BackupJob, User


def test_jobs_create_prints_token_once(app, client):
    result = app.test_cli_runner().invoke(args=["jobs", "create", "nightly-db"])
    assert result.exit_code == 0, result.output
    token = re.search(r"Hook token \(shown only now, store it safely\): (\S+)", result.output).group(1)
    assert f"http://backwatch.test/hooks/{token}" in result.output
    assert "curl -fsS -X POST" in result.output
    with app.app_context():
        job = db.session.execute(db.select(BackupJob)).scalar_one()
        assert token not in job.token_hash
    response = client.post(f"/hooks/{token}", json={"status": "success"})
    assert response.status_code == 202


def test_tokens_are_long_and_distinct(app):
    runner = app.test_cli_runner()
    tokens = set()
    for name in ("a", "b", "c"):
        output = runner.invoke(args=["jobs", "create", name]).output
        tokens.add(re.search(r"store it safely\): (\S+)", output).group(1))
    assert len(tokens) == 3
    # token_urlsafe(32): 32 random bytes, 43 base64url characters.
    assert all(len(token) >= 43 for token in tokens)


def test_jobs_create_duplicate_name(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["jobs", "create", "same"])
    result = runner.invoke(args=["jobs", "create", "same"])
    assert result.exit_code != 0
    assert "already exists" in result.output


def test_rotate_token_replaces_old(app, client):
    runner = app.test_cli_runner()
    old = re.search(r"safely\): (\S+)", runner.invoke(args=["jobs", "create", "db"]).output).group(1)
    new = re.search(r"\): (\S+)", runner.invoke(args=["jobs", "rotate-token", "db"]).output).group(1)
    assert client.post(f"/hooks/{old}", json={}).status_code == 404
    assert client.post(f"/hooks/{new}", json={}).status_code == 202


def test_ensure_admin_generates_password_once(app, monkeypatch):
    monkeypatch.delenv("BACKWATCH_ADMIN_PASSWORD", raising=False)
    monkeypatch.setenv("BACKWATCH_ADMIN_EMAIL", "Root@Example.com")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["users", "ensure-admin"])
    password = re.search(r"Generated password \(shown only now\): (\S+)", first.output).group(1)
    second = runner.invoke(args=["users", "ensure-admin"])
    assert "Platform admin exists: root@example.com" in second.output
    assert password not in second.output
    with app.app_context():
        [user] = db.session.execute(db.select(User)).scalars().all()
        assert user.is_platform_admin
        assert user.check_password(password)


def test_ensure_admin_from_environment(app, monkeypatch):
    monkeypatch.setenv("BACKWATCH_ADMIN_EMAIL", "ops@example.com")
    monkeypatch.setenv("BACKWATCH_ADMIN_PASSWORD", "from the environment")
    result = app.test_cli_runner().invoke(args=["users", "ensure-admin"])
    assert "Generated password" not in result.output
    with app.app_context():
        user = db.session.execute(db.select(User)).scalar_one()
        assert user.check_password("from the environment")
