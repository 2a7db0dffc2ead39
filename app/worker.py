"""The worker process: `python -m app.worker`.

RQ runs each job in a forked child. Building the app here, once, before any
fork means each job starts with the app ready instead of rebuilding it
(about a second per job when measured).
"""

import os
import sys

from rq import Queue, Worker

# The job modules are imported here, before any fork, so that each job's
# child process finds them loaded instead of importing them again.
import app.monitoring.artifacts  # noqa: F401
import app.monitoring.capacity  # noqa: F401
import app.monitoring.checks  # noqa: F401
import app.monitoring.sweeper  # noqa: F401
import app.notifications.send  # noqa: F401
from app import create_app, jobs
from app.extensions import db
from app.queue import get_redis


def main():
    app = create_app()
    jobs.use_app(app)
    with app.app_context():
        # A forked child must open its own database connections, never reuse the parent's.
        engine = db.engine
        os.register_at_fork(after_in_child=lambda: engine.dispose(close=False))
        connection = get_redis()
        queue = Queue(app.config["RQ_QUEUE"], connection=connection)
    worker = Worker([queue], connection=connection)
    worker.work(with_scheduler=True, logging_level=os.environ.get("LOG_LEVEL", "INFO"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
