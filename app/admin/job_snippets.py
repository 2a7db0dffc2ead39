"""Ready-to-paste reporting snippets for a job's hook token.

They are built only on the page that shows a new token, because the token
itself is not stored: only its hash is.
"""

import json
import shlex
from dataclasses import dataclass

from flask import current_app

# Crontab schedule used in the examples of a job without a cron schedule.
EXAMPLE_CRON = "30 2 * * *"
CURL = "curl -fsS -m 10 --retry 3"


@dataclass
class Snippet:
    title: str
    text: str
    note: str = ""


def hook_urls(token):
    """Return (JSON hook URL, ping URL) of `token` under the configured BASE_URL."""
    base = current_app.config["BASE_URL"].rstrip("/")
    return f"{base}/hooks/{token}", f"{base}/ping/{token}"


def hook_snippets(job, token):
    """Return the snippets that report runs of `job` with `token`: curl, the wrapper and borgmatic."""
    hook_url, ping_url = hook_urls(token)
    if job.schedule_cron:
        cron = job.schedule_cron
        cron_comment = f"# Backwatch expects this job at '{cron}' in {job.schedule_timezone or 'UTC'}; cron reads the line in the host's time zone"
    else:
        cron = EXAMPLE_CRON
        cron_comment = "# The job has no cron schedule in Backwatch; replace the example time"
    return [
        _curl_json(hook_url),
        _curl_ping(ping_url, cron, cron_comment),
        _wrapper(hook_url, cron, cron_comment),
        _borgmatic(ping_url),
    ]


def _curl_json(hook_url):
    url = shlex.quote(hook_url)
    finished = json.dumps({"status": "success", "duration_seconds": 842, "size_bytes": 5368709120})
    started = json.dumps({"status": "started"})
    text = "\n".join([
        "# A finished run, with its duration and the size of what it produced",
        f"{CURL} -X POST -H 'Content-Type: application/json' \\",
        f"  -d {shlex.quote(finished)} \\",
        f"  {url}",
        "",
        "# Or report the start, then the finish: the duration is taken from the start",
        f"URL={url}",
        f"{CURL} -X POST -H 'Content-Type: application/json' -d {shlex.quote(started)} \"$URL\"",
        "/usr/local/bin/backup.sh",
        "code=$?",
        f"{CURL} -X POST -H 'Content-Type: application/json' -d \"{{\\\"exit_code\\\": $code}}\" \"$URL\"",
    ])
    return Snippet("curl with a JSON report", text, "Exit code 0 is stored as a success, any other as a failure.")


def _curl_ping(ping_url, cron, cron_comment):
    url = shlex.quote(ping_url)
    text = "\n".join([
        "# healthchecks.io-style pings: /start, then the command's exit status",
        f"URL={url}",
        f"{CURL} -o /dev/null \"$URL/start\"",
        "/usr/local/bin/backup.sh",
        f"{CURL} -o /dev/null \"$URL/$?\"",
        "",
        "# The same as one crontab line",
        cron_comment,
        f"{cron} {CURL} -o /dev/null {url}/start; /usr/local/bin/backup.sh; {CURL} -o /dev/null {url}/$?",
    ])
    return Snippet(
        "curl pings", text,
        "/fail reports a failure without an exit status; a plain GET of the URL reports a success.",
    )


def _wrapper(hook_url, cron, cron_comment):
    text = "\n".join([
        "# Copy examples/backwatch-wrap from the Backwatch checkout to the backup host",
        "install -m 755 backwatch-wrap /usr/local/bin/backwatch-wrap",
        "",
        "# crontab: the URL in the environment keeps the token out of ps output",
        cron_comment,
        f"BACKWATCH_URL={hook_url}",
        f"{cron} /usr/local/bin/backwatch-wrap --quiet --output /var/backups/db.dump -- "
        "pg_dump -Fc -f /var/backups/db.dump mydb",
    ])
    return Snippet(
        "backwatch-wrap", text,
        "The wrapper times the command, measures --output and sends the log tail of a failed run. "
        "It needs only python3.",
    )


def _borgmatic(ping_url):
    text = "\n".join([
        "healthchecks:",
        f"    ping_url: {ping_url}",
    ])
    return Snippet(
        "borgmatic", text,
        "borgmatic 1.8 and later read this block at the top level of the configuration; "
        "older versions nest it under hooks:.",
    )
