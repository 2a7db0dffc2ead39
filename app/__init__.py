"""Backwatch: the application factory."""

import logging
import os
import secrets

from flask import Flask, jsonify, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.config import Config
from app.extensions import csrf, db, login_manager, mail, migrate

log = logging.getLogger(__name__)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Paths whose clients are programs, so errors are JSON rather than pages.
JSON_PREFIXES = ("/hooks/", "/api/", "/healthz")


def create_app(overrides=None):
    """Build the Flask application; `overrides` replaces settings (tests use it)."""
    app = Flask(
        __name__,
        instance_path=os.path.join(ROOT, "instance"),
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(ROOT, "static"),
    )
    app.config.from_object(Config)
    app.config.update(overrides or {})
    _configure_database_url(app)
    _configure_secret_key(app)
    _configure_session_cookie(app)
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(ROOT, "migrations"))
    mail.init_app(app)
    csrf.init_app(app)
    login_manager.init_app(app)

    from app import models  # noqa: F401  (registers the tables)
    from app.admin import init_admin
    from app.api import bp as api_bp
    from app.auth import bp as auth_bp
    from app.cli import register_commands
    from app.intake import bp as intake_bp
    from app.metrics import bp as metrics_bp

    app.register_blueprint(intake_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(metrics_bp)
    init_admin(app)
    register_commands(app)
    _register_error_handlers(app)
    app.add_url_rule("/healthz", "health", _health)
    return app


def _health():
    """Return 200 while the database responds; load balancers poll this."""
    db.session.execute(db.text("SELECT 1"))
    return jsonify({"status": "ok"})


def _configure_database_url(app):
    url = app.config.get("SQLALCHEMY_DATABASE_URI")
    if not url:
        os.makedirs(app.instance_path, exist_ok=True)
        url = "sqlite:///" + os.path.join(app.instance_path, "backwatch.db")
    # Heroku-style URLs name the scheme "postgres", which SQLAlchemy rejects.
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    if url.startswith("sqlite"):
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})


def _configure_secret_key(app):
    """Use SECRET_KEY, or a random key kept in the instance folder for local runs."""
    if app.config.get("SECRET_KEY"):
        return
    path = os.path.join(app.instance_path, "secret_key")
    os.makedirs(app.instance_path, exist_ok=True)
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    with open(path) as handle:
        app.config["SECRET_KEY"] = handle.read().strip()


def _configure_session_cookie(app):
    """Send the session cookie over HTTPS only when BACKWATCH_BASE_URL is an https:// address."""
    if app.config["BASE_URL"].lower().startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["REMEMBER_COOKIE_SECURE"] = True


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Turn on WAL, a busy timeout and foreign keys for every SQLite connection."""
    if type(dbapi_connection).__module__ != "sqlite3":
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _register_error_handlers(app):
    @app.errorhandler(HTTPException)
    def http_error(exc):
        if not request.path.startswith(JSON_PREFIXES):
            return exc
        field = "token" if exc.code == 404 and request.path.startswith("/hooks/") else "request"
        return jsonify({"error": {"field": field, "message": exc.description}}), exc.code

    @app.errorhandler(OperationalError)
    def database_unavailable(exc):
        # Locked SQLite file or lost PostgreSQL connection: nothing was
        # stored, and the same request may succeed in a moment.
        db.session.rollback()
        log.warning("Request %s %s: database unavailable: %s", request.method, request.path, exc.orig)
        body = {"error": {"field": None, "message": "database unavailable; nothing was stored, retry shortly"}}
        return jsonify(body), 503, {"Retry-After": "5"}

    @app.errorhandler(Exception)
    def unexpected_error(exc):
        db.session.rollback()
        log.exception("Request %s %s failed", request.method, request.path)
        if request.path.startswith(JSON_PREFIXES):
            return jsonify({"error": {"field": None, "message": "internal error; the request was not stored"}}), 500
        return "Internal error", 500
