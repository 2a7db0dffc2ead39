"""Real borgmatic, real borg: the healthchecks hook pings a Backwatch server on loopback."""

import os
import re
import shutil
import subprocess
import threading

import pytest
import yaml
from werkzeug.serving import make_server

from app.extensions import db
from app.models import BackupRun, RunStart

BORG = shutil.which("borg")
BORGMATIC = shutil.which("borgmatic")
pytestmark = pytest.mark.skipif(
    BORG is None or BORGMATIC is None,
    reason="needs borg and borgmatic on PATH (apt-get install -y borgbackup borgmatic)",
)
# One borgmatic run backs up a few small files, so this only stops a hung run.
COMMAND_TIMEOUT_SECONDS = 120


class RequestRecorder:
    """WSGI middleware that records (method, path, status) of every request, in order."""

    def __init__(self, app):
        self.app = app
        self.requests = []

    def __call__(self, environ, start_response):
        def record_start_response(status, headers, exc_info=None):
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return self.app(environ, record_start_response)


@pytest.fixture
def server(app):
    """Serve the app from a thread on a free loopback port, and yield (base URL, recorder)."""
    recorder = RequestRecorder(app.wsgi_app)
    httpd = make_server("127.0.0.1", 0, recorder, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", recorder
    httpd.shutdown()
    thread.join(timeout=10)
    httpd.server_close()


@pytest.fixture
def borg_env(tmp_path):
    """Environment for borg and borgmatic with every home, cache and state directory under tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "BORG_BASE_DIR": str(tmp_path / "borg-base"),
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        # The pings go to loopback. No proxy variable is copied from the
        # caller's environment, and this keeps any default proxy unused.
        "NO_PROXY": "127.0.0.1",
    }
    (tmp_path / "run").mkdir(mode=0o700)
    return env


def borgmatic_version():
    output = subprocess.run([BORGMATIC, "--version"], capture_output=True, text=True, check=True).stdout
    return tuple(int(part) for part in re.findall(r"\d+", output)[:2])


def write_config(path, source, repository, ping_url):
    """Write a borgmatic config in the layout the installed version reads.

    borgmatic 1.8 moved every option to the top level. Debian 12 ships
    1.7.7, which needs the older sectioned layout and plain repository
    paths. borgmatic keeps its own state under HOME and the XDG
    directories, which borg_env puts under tmp_path.
    """
    # send_logs defaults to true in 1.7.7 and to false in 2.1.10.
    hook = {"ping_url": ping_url, "send_logs": True}
    if borgmatic_version() >= (1, 8):
        config = {
            "source_directories": [str(source)],
            "repositories": [{"path": str(repository)}],
            "keep_daily": 7,
            "healthchecks": hook,
        }
    else:
        config = {
            "location": {
                "source_directories": [str(source)],
                "repositories": [str(repository)],
            },
            "retention": {"keep_daily": 7},
            "hooks": {"healthchecks": hook},
        }
    path.write_text(yaml.safe_dump(config))


def run_borgmatic(config_path, log_path, env):
    return subprocess.run(
        [
            BORGMATIC, "--config", str(config_path), "--verbosity", "1", "--monitoring-verbosity", "1",
            "--log-file", str(log_path), "create", "--stats",
        ],
        env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
    )


@pytest.fixture
def backup_setup(tmp_path, borg_env):
    """Create source files and an unencrypted borg repository, and return (source, repository)."""
    source = tmp_path / "data"
    (source / "docs").mkdir(parents=True)
    (source / "docs" / "report.txt").write_text("quarterly numbers\n" * 200)
    (source / "photo.bin").write_bytes(os.urandom(256 * 1024))
    repository = tmp_path / "repo"
    subprocess.run(
        [BORG, "init", "--encryption=none", str(repository)],
        env=borg_env, check=True, capture_output=True, timeout=COMMAND_TIMEOUT_SECONDS,
    )
    return source, repository


def stored_runs(app):
    with app.app_context():
        runs = db.session.execute(db.select(BackupRun).order_by(BackupRun.id)).scalars().all()
        for run in runs:
            db.session.expunge(run)
        return runs


def ping_sequence(recorder, token):
    """Check that every request was a ping that returned 200, and return the part of each path after the token."""
    prefix = f"/ping/{token}"
    assert [status for _, _, status in recorder.requests] == [200] * len(recorder.requests)
    assert all(method == "POST" and path.startswith(prefix) for method, path, _ in recorder.requests)
    return [path[len(prefix):] for _, path, _ in recorder.requests]


def pending_start_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(RunStart))


def test_borgmatic_success_stored_with_duration(app, tmp_path, make_job, server, borg_env, backup_setup):
    base_url, recorder = server
    source, repository = backup_setup
    _, token = make_job("borgmatic-home")
    config_path = tmp_path / "borgmatic.yaml"
    write_config(config_path, source, repository, f"{base_url}/ping/{token}")

    result = run_borgmatic(config_path, tmp_path / "borgmatic.log", borg_env)

    assert result.returncode == 0, result.stdout + result.stderr
    # Newer borgmatic releases (2.1.10, for one) send a log ping before the finish.
    assert ping_sequence(recorder, token) in (["/start", ""], ["/start", "/log", ""])
    [run] = stored_runs(app)
    assert run.status == "success"
    assert run.exit_code is None
    assert run.started_at is not None
    assert run.duration_seconds is not None
    assert run.duration_seconds > 0
    assert run.duration_seconds == (run.finished_at - run.started_at).total_seconds()
    assert str(repository) in run.log_tail
    assert pending_start_count(app) == 0
    # The backup itself happened: the repository now has one archive.
    archives = subprocess.run(
        [BORG, "list", "--short", str(repository)],
        env=borg_env, check=True, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS,
    ).stdout.split()
    assert len(archives) == 1


def test_borgmatic_failure_raises_alert(
    app, tmp_path, make_job, server, borg_env, backup_setup, admin_client, run_worker
):
    base_url, recorder = server
    source, _ = backup_setup
    missing_repository = tmp_path / "no-such-repo"
    _, token = make_job("borgmatic-broken")
    config_path = tmp_path / "borgmatic.yaml"
    write_config(config_path, source, missing_repository, f"{base_url}/ping/{token}")

    result = run_borgmatic(config_path, tmp_path / "borgmatic.log", borg_env)

    assert result.returncode != 0, result.stdout + result.stderr
    assert ping_sequence(recorder, token) in (["/start", "/fail"], ["/start", "/log", "/fail"])
    [run] = stored_runs(app)
    assert run.status == "failure"
    assert run.duration_seconds is not None
    assert "does not exist" in run.log_tail
    assert pending_start_count(app) == 0

    assert run_worker() == []
    alerts = admin_client.get("/api/v1/alerts").json["alerts"]
    assert [(a["type"], a["severity"]) for a in alerts] == [("BACKUP_FAILURE", "CRITICAL")]
    assert alerts[0]["message"] == "Backup of borgmatic-broken failed: reported failure"
