"""The example wrapper examples/backwatch-wrap, run as a real program against
the app served over HTTP on 127.0.0.1, with real tar archives."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app.extensions import db
from app.models import BackupRun

WRAPPER = Path(__file__).resolve().parent.parent / "examples" / "backwatch-wrap"
FILE_BYTES = 32 * 1024
FILE_COUNT = 8
# Only stops a hang, because every wrapper run in these tests finishes within seconds.
RUN_TIMEOUT_SECONDS = 60
EXIT_OUTPUT_MISSING = 1
EXIT_REPORT_FAILED = 75

pytestmark = pytest.mark.skipif(shutil.which("tar") is None, reason="tar is not installed")


def serve(wsgi_app):
    """Serve `wsgi_app` on a free port of 127.0.0.1 in a thread and return (base_url, stop)."""
    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()

    return f"http://127.0.0.1:{server.server_port}", stop


@pytest.fixture
def base_url(app):
    url, stop = serve(app)
    yield url
    stop()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on, so connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrap(url, command, *options, cwd=None, env_url=None):
    """Run the wrapper around `command` and return the CompletedProcess, with text output."""
    env = {key: value for key, value in os.environ.items() if key != "BACKWATCH_URL"}
    if env_url is not None:
        env["BACKWATCH_URL"] = env_url
    url_options = ["--url", url] if url is not None else []
    return subprocess.run(
        [str(WRAPPER), *url_options, *options, "--", *command],
        capture_output=True, text=True, errors="replace", cwd=cwd, env=env, timeout=RUN_TIMEOUT_SECONDS,
    )


def reported_run_id(stderr):
    match = re.search(r"reported run (\d+) ", stderr)
    assert match, f"no 'reported run' line in the wrapper's stderr:\n{stderr}"
    return int(match.group(1))


def stored_run(app, run_id):
    with app.app_context():
        run = db.session.get(BackupRun, run_id)
        db.session.expunge(run)
        return run


def run_count(app):
    with app.app_context():
        return db.session.scalar(db.select(db.func.count()).select_from(BackupRun))


def fill_source(directory, count=FILE_COUNT):
    """Write `count` files of random (incompressible) bytes, so archive sizes are stable."""
    directory.mkdir(exist_ok=True)
    for index in range(count):
        (directory / f"part-{index}.bin").write_bytes(os.urandom(FILE_BYTES))


def alerts_of_job(admin_client, job_name, alert_type):
    response = admin_client.get(f"/api/v1/alerts?job={job_name}&per_page=200")
    assert response.status_code == 200
    return [alert for alert in response.json["alerts"] if alert["type"] == alert_type]


def test_wrapper_is_executable():
    assert os.access(WRAPPER, os.X_OK)
    assert WRAPPER.read_text().startswith("#!/usr/bin/env python3\n")


def test_tar_runs_raise_size_and_failure_alerts(app, base_url, make_job, run_worker, admin_client, tmp_path):
    _, token = make_job("etc-tar")
    url = f"{base_url}/hooks/{token}"
    source = tmp_path / "source"
    fill_source(source)

    sizes = []
    for night in range(4):
        # Fresh random bytes in one file: the content changes, the size does not.
        (source / "part-0.bin").write_bytes(os.urandom(FILE_BYTES))
        archive = f"night-{night}.tar.gz"
        result = wrap(url, ["tar", "-czf", archive, "source"], "--output", archive,
                      "--storage-backend", "local-disk", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        run = stored_run(app, reported_run_id(result.stderr))
        assert run.status == "success"
        assert run.exit_code == 0
        assert run.size_bytes == (tmp_path / archive).stat().st_size
        assert run.storage_backend == "local-disk"
        assert run.log_tail is None
        assert run.duration_seconds is not None
        sizes.append(run.size_bytes)
    assert max(sizes) < min(sizes) * 1.05

    assert run_worker() == []
    assert alerts_of_job(admin_client, "etc-tar", "SIZE_DEVIATION") == []
    assert alerts_of_job(admin_client, "etc-tar", "BACKUP_FAILURE") == []

    # Most of the data disappears: the archive is about 1/8 of the usual size.
    for extra in sorted(source.iterdir())[1:]:
        extra.unlink()
    result = wrap(url, ["tar", "-czf", "shrunk.tar.gz", "source"], "--output", "shrunk.tar.gz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shrunk_run_id = reported_run_id(result.stderr)
    assert run_worker() == []
    [size_alert] = alerts_of_job(admin_client, "etc-tar", "SIZE_DEVIATION")
    assert size_alert["severity"] == "CRITICAL"
    assert size_alert["run_id"] == shrunk_run_id
    assert "smaller than usual" in size_alert["message"]

    # The source path is gone: GNU tar prints "Cannot stat" and exits 2.
    result = wrap(url, ["tar", "-czf", "failed.tar.gz", "no-such-dir"], "--output", "failed.tar.gz", cwd=tmp_path)
    assert result.returncode == 2
    assert "no-such-dir" in result.stderr
    failed_run_id = reported_run_id(result.stderr)
    assert run_worker() == []
    [failure_alert] = alerts_of_job(admin_client, "etc-tar", "BACKUP_FAILURE")
    assert failure_alert["severity"] == "CRITICAL"
    assert failure_alert["run_id"] == failed_run_id
    assert "tar exited with code 2" in failure_alert["message"]
    run = stored_run(app, failed_run_id)
    assert run.status == "failure"
    assert run.exit_code == 2
    assert run.size_bytes is None
    assert "no-such-dir" in run.log_tail
    assert "No such file or directory" in run.log_tail


@pytest.mark.parametrize("code", [3, 42, 255])
def test_exit_code_passed_through(app, base_url, make_job, code):
    _, token = make_job()
    result = wrap(f"{base_url}/hooks/{token}", ["sh", "-c", f"echo to-stdout; echo to-stderr >&2; exit {code}"])
    assert result.returncode == code
    assert "to-stdout" in result.stdout
    assert "to-stderr" in result.stderr
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.status == "failure"
    assert run.exit_code == code
    assert run.error == f"sh exited with code {code}"
    assert "to-stdout" in run.log_tail
    assert "to-stderr" in run.log_tail


def test_signal_exit_code_128_plus(app, base_url, make_job):
    _, token = make_job()
    result = wrap(f"{base_url}/hooks/{token}", ["sh", "-c", "kill -TERM $$"])
    assert result.returncode == 128 + 15
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.exit_code == 128 + 15
    assert "SIGTERM" in run.error


def test_command_not_found_reported(app, base_url, make_job, tmp_path):
    _, token = make_job()
    result = wrap(f"{base_url}/hooks/{token}", [str(tmp_path / "no-such-program")])
    assert result.returncode == 127
    assert "command not found" in result.stderr
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.status == "failure"
    assert run.exit_code == 127
    assert "command not found" in run.error


def test_missing_output_reported_as_failure(app, base_url, make_job, tmp_path):
    _, token = make_job()
    missing = tmp_path / "never-written.tar.gz"
    result = wrap(f"{base_url}/hooks/{token}", ["true"], "--output", str(missing))
    assert result.returncode == EXIT_OUTPUT_MISSING
    assert "is missing" in result.stderr
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.status == "failure"
    assert run.exit_code == 0
    assert run.error == f"output {missing} is missing after the command exited 0"
    assert run.size_bytes is None


def test_directory_output_total_size(app, base_url, make_job, tmp_path):
    _, token = make_job()
    fill_source(tmp_path / "source", count=3)
    (tmp_path / "source" / "nested").mkdir()
    (tmp_path / "source" / "nested" / "small.txt").write_text("12345")
    result = wrap(f"{base_url}/hooks/{token}", ["cp", "-r", "source", "copy"], "--output", "copy", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.size_bytes == 3 * FILE_BYTES + 5


def test_log_tail_bounded(app, base_url, make_job):
    _, token = make_job()
    # One stream only: lines written to stdout and stderr may reach the tail in either order.
    script = "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo final-error; exit 3"
    result = wrap(f"{base_url}/hooks/{token}", ["sh", "-c", script], "--log-bytes", "1000")
    assert result.returncode == 3
    assert "line 0\n" in result.stdout
    assert "line 1999\n" in result.stdout
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.log_tail.endswith("line 1999\nfinal-error\n")
    assert "earlier bytes of output not kept" in run.log_tail
    assert "line 0\n" not in run.log_tail
    assert len(run.log_tail.encode()) < 1100


def test_url_from_environment(app, base_url, make_job):
    _, token = make_job()
    result = wrap(None, ["true"], env_url=f"{base_url}/hooks/{token}")
    assert result.returncode == 0, result.stderr
    assert stored_run(app, reported_run_id(result.stderr)).status == "success"


def test_missing_url_does_not_run_command(tmp_path):
    marker = tmp_path / "ran"
    result = wrap(None, ["touch", str(marker)])
    assert result.returncode == 2
    assert "BACKWATCH_URL" in result.stderr
    assert not marker.exists()


def test_unreachable_url_keeps_failed_exit_code(closed_port):
    result = wrap(f"http://127.0.0.1:{closed_port}/hooks/some-token", ["sh", "-c", "exit 4"], "--tries", "2")
    assert result.returncode == 4
    assert "report try 1 of 2 failed" in result.stderr
    assert "report not delivered" in result.stderr
    assert "some-token" not in result.stderr


def test_unreachable_url_after_success_exits_75(closed_port):
    result = wrap(f"http://127.0.0.1:{closed_port}/hooks/some-token", ["true"], "--tries", "1")
    assert result.returncode == EXIT_REPORT_FAILED
    assert "report not delivered" in result.stderr
    assert "Connection refused" in result.stderr


def test_unknown_token_error_printed(app, base_url, make_job):
    make_job()
    result = wrap(f"{base_url}/hooks/not-a-real-token", ["true"])
    assert result.returncode == EXIT_REPORT_FAILED
    assert "HTTP 404" in result.stderr
    assert "token: no job has this token" in result.stderr
    assert "try 1 of" not in result.stderr
    assert run_count(app) == 0


class LoseFirstResponses:
    """WSGI middleware that lets the app handle every request but replaces the
    first `count` responses with a 503, as when a proxy loses the app's response."""

    def __init__(self, wsgi_app, count):
        self.wsgi_app = wsgi_app
        self.remaining = count

    def __call__(self, environ, start_response):
        if self.remaining <= 0:
            return self.wsgi_app(environ, start_response)
        self.remaining -= 1
        discarded = self.wsgi_app(environ, lambda status, headers, exc_info=None: (lambda data: None))
        try:
            b"".join(discarded)
        finally:
            getattr(discarded, "close", lambda: None)()
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [b'{"error": {"field": null, "message": "upstream response lost"}}']


def test_retry_after_lost_response_stored_once(app, make_job):
    _, token = make_job()
    url, stop = serve(LoseFirstResponses(app, count=1))
    try:
        result = wrap(f"{url}/hooks/{token}", ["true"])
    finally:
        stop()
    assert result.returncode == 0, result.stderr
    assert "report try 1 of 3 failed (HTTP 503: upstream response lost)" in result.stderr
    assert "already stored by an earlier try" in result.stderr
    assert run_count(app) == 1


def test_too_large_log_sent_shorter(app, base_url, make_job, monkeypatch):
    monkeypatch.setitem(app.config, "HOOK_MAX_BODY_BYTES", 16 * 1024)
    _, token = make_job()
    script = "i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); done; exit 1"
    result = wrap(f"{base_url}/hooks/{token}", ["sh", "-c", script], "--log-bytes", "65536")
    assert result.returncode == 1
    assert "too large" in result.stderr
    run = stored_run(app, reported_run_id(result.stderr))
    assert run.log_tail.endswith("line 4999\n")
    assert len(run.log_tail.encode()) < 4096 + 100


def test_sigterm_forwarded_and_reported(app, base_url, make_job):
    _, token = make_job()
    wrapper = subprocess.Popen(
        [str(WRAPPER), "--url", f"{base_url}/hooks/{token}", "--", "sh", "-c", "echo started; exec sleep 30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert wrapper.stdout.readline() == "started\n"
        wrapper.send_signal(signal.SIGTERM)
        _, stderr = wrapper.communicate(timeout=RUN_TIMEOUT_SECONDS)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
    assert wrapper.returncode == 128 + signal.SIGTERM
    run = stored_run(app, reported_run_id(stderr))
    assert run.status == "failure"
    assert run.error == "sh was killed by SIGTERM (15)"


def test_ctrl_c_reaches_command_run_reported(app, base_url, make_job):
    _, token = make_job()
    # A new session plays the part of the terminal's foreground process group.
    wrapper = subprocess.Popen(
        [str(WRAPPER), "--url", f"{base_url}/hooks/{token}", "--", "sh", "-c", "echo started; exec sleep 30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert wrapper.stdout.readline() == "started\n"
        os.killpg(wrapper.pid, signal.SIGINT)
        _, stderr = wrapper.communicate(timeout=RUN_TIMEOUT_SECONDS)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
    assert wrapper.returncode == 128 + signal.SIGINT
    run = stored_run(app, reported_run_id(stderr))
    assert run.exit_code == 128 + signal.SIGINT
    assert run.error == "sh was killed by SIGINT (2)"


def test_data_on_stdout_not_logged(app, base_url, make_job):
    _, token = make_job()
    result = wrap(f"{base_url}/hooks/{token}", ["sh", "-c", "printf backup-data; echo warning-text >&2; exit 5"],
                  "--data-on-stdout")
    assert result.returncode == 5
    assert result.stdout == "backup-data"
    run = stored_run(app, reported_run_id(result.stderr))
    assert "warning-text" in run.log_tail
    assert "backup-data" not in run.log_tail
