"""The restic hook with the real restic: `restic backup --json` on files made
here, its output posted to the app served over HTTP on 127.0.0.1.

Nothing is installed here. Without `restic` on PATH the tests are skipped.
"""

import json
import os
import shutil
import subprocess
import threading
import urllib.request

import pytest
from werkzeug.serving import make_server

from app.extensions import db
from app.models import BackupRun

# Only stops a hang: each restic command here finishes in a few seconds.
RESTIC_TIMEOUT_SECONDS = 120
FILE_BYTES = 256 * 1024

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not on PATH; install it with apt-get install restic")


@pytest.fixture
def base_url(app):
    """The app served on a free port of 127.0.0.1 in a thread."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


@pytest.fixture
def restic(tmp_path):
    """Return a function that runs restic on a repository in tmp_path and returns the CompletedProcess."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "RESTIC_REPOSITORY": str(tmp_path / "repo"),
        "RESTIC_PASSWORD": "correct horse battery staple",
        "RESTIC_CACHE_DIR": str(tmp_path / "cache"),
    }

    def run(*args, check=True):
        return subprocess.run(
            ["restic", *args], env=env, cwd=tmp_path, capture_output=True, text=True,
            timeout=RESTIC_TIMEOUT_SECONDS, check=check,
        )

    run("init")
    return run


@pytest.fixture
def source(tmp_path):
    """A folder of three files, 256 KiB each, with different contents."""
    folder = tmp_path / "source"
    folder.mkdir()
    for index in range(3):
        (folder / f"file-{index}.bin").write_bytes(bytes([index + 1]) * FILE_BYTES)
    return folder


def post(base_url, token, body, exit_code):
    request = urllib.request.Request(
        f"{base_url}/hooks/{token}/restic?exit_code={exit_code}",
        data=body.encode(), method="POST", headers={"Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def stored_run(app, run_id):
    with app.app_context():
        run = db.session.get(BackupRun, run_id)
        db.session.expunge(run)
        return run


def summary_of(output):
    [summary] = [json.loads(line) for line in output.splitlines() if '"message_type":"summary"' in line]
    return summary


def test_real_restic_stream(app, base_url, make_job, restic, source):
    _, token = make_job()
    result = restic("backup", "--json", str(source))
    summary = summary_of(result.stdout)

    status, answer = post(base_url, token, result.stdout, result.returncode)
    assert status == 202
    assert answer["duplicate"] is False
    run = stored_run(app, answer["run_id"])
    assert run.status == "success"
    assert run.exit_code == 0
    assert run.size_bytes == 3 * FILE_BYTES
    assert run.size_bytes == summary["total_bytes_processed"]
    assert run.duration_seconds == pytest.approx(summary["total_duration"])
    assert run.client_run_id == summary["snapshot_id"]
    assert "files_new: 3" in run.log_tail

    # The same output posted again is the same snapshot, stored once.
    status, again = post(base_url, token, result.stdout, result.returncode)
    assert again == {"run_id": answer["run_id"], "duplicate": True}


def test_real_restic_summary_only(app, base_url, make_job, restic, source):
    _, token = make_job()
    restic("backup", "--json", "--quiet", str(source))
    (source / "file-0.bin").write_bytes(b"changed" * 1000)
    result = restic("backup", "--json", "--quiet", str(source))
    [line] = result.stdout.splitlines()
    summary = json.loads(line)

    status, answer = post(base_url, token, line, result.returncode)
    assert status == 202
    run = stored_run(app, answer["run_id"])
    assert run.status == "success"
    assert run.size_bytes == 2 * FILE_BYTES + 7000
    assert run.duration_seconds == pytest.approx(summary["total_duration"])
    assert run.client_run_id == summary["snapshot_id"]
    assert "files_changed: 1" in run.log_tail


def test_real_restic_failure(app, base_url, make_job, restic, tmp_path):
    _, token = make_job()
    result = restic("backup", "--json", str(tmp_path / "does-not-exist"), check=False)
    assert result.returncode != 0

    # stdout and stderr together, as `2>&1` in a backup script sends them.
    status, answer = post(base_url, token, result.stdout + result.stderr, result.returncode)
    assert status == 202
    run = stored_run(app, answer["run_id"])
    assert run.status == "failure"
    assert run.exit_code == result.returncode
    assert run.size_bytes is None
    assert run.client_run_id is None
    # restic 0.14 prints "Fatal: all target directories/files do not exist".
    assert "not exist" in run.error
