"""Console access and security: login sessions, password changes, roles,
CSRF on every post, login on every page, and escaping of user text."""

import re
import threading
import time
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
from flask_admin.model import BaseModelView
from flask_login import login_user
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from app import create_app
from app.admin.views import FLASK_ADMIN_FORM_VIEWS, AdminOnlyMixin, AdminWritesMixin
from app.crypto import encrypt_secret
from app.extensions import db
from app.models import (
    AlertEvent,
    ApiToken,
    BackupJob,
    BackupRun,
    Delivery,
    NotificationTemplate,
    Severity,
    Silence,
    StorageBackend,
    UsageReading,
    User,
    WebhookEndpoint,
    utcnow,
)
from app.monitoring.alerts import create_backup_alert_with_notifications
from app.notifications.dispatcher import commit_and_dispatch
from app.notifications.templates import create_builtin_templates
from tests.conftest import login

HOSTILE = "<img src=x onerror=alert(1)>"
HOSTILE_ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
SCRIPT = "<script>alert(1)</script>"
RAW_MARKERS = ("<img src=x onerror", SCRIPT)

ADMIN = ("admin@example.com", "admin password 1")
VIEWER = ("viewer@example.com", "viewer password 1")
SECRET_WEBHOOK_URL = "https://hooks.slack.example/services/T000/B000/secretpart"

# GET rules that respond without a login, and why.
PUBLIC_GET_RULES = {
    "/login": "the login form",
    "/healthz": "load balancer health check",
    "/metrics": "Prometheus scrape, with its own bearer token or network allowlist",
    "/api/v1/openapi.json": "the API description",
    "/static/<path:filename>": "static files",
    "/admin/static/<path:filename>": "Flask-Admin's static files",
    "/ping/<token>": "backup jobs report with their hook token",
    "/ping/<token>/<action>": "backup jobs report with their hook token",
}
PUBLIC_PREFIXES = ("/hooks/", "/ping/")

# Console views that act only on the current user's own data, so every
# logged-in user may post to them. Any other view must use AdminOnlyMixin
# or AdminWritesMixin (SecureModelView).
OWN_DATA_VIEWS = {"admin", "inbox", "preferences", "password", "api_tokens"}


def csrf_token(client, path="/admin/password/"):
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', page).group(1)


def fill_rule(rule, number="1"):
    """Return the rule's path with every variable filled: numbers for int, a dummy token otherwise."""

    def value(match):
        converter, name = match.group(1), match.group(2)
        if converter in ("int", "float"):
            return number
        if name == "export_type":
            return "csv"
        return "dummy-token"

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", value, rule.rule)


def admin_views(app):
    [admin] = app.extensions["admin"]
    return [admin.index_view, *admin._views]


def view_of(app, endpoint):
    blueprint = endpoint.split(".", 1)[0]
    for view in admin_views(app):
        if view.endpoint == blueprint:
            return view
    return None


def database_snapshot(app):
    """Return every row of every table, to show that a request changed nothing."""
    with app.app_context():
        snapshot = {}
        for table in db.metadata.sorted_tables:
            rows = db.session.execute(table.select()).all()
            snapshot[table.name] = sorted(repr(tuple(row)) for row in rows)
        db.session.remove()
        return snapshot


@pytest.fixture
def users(make_user):
    return {
        "admin": make_user(*ADMIN, admin=True),
        "viewer": make_user(*VIEWER),
    }


@pytest.fixture
def viewer_client(app, users):
    client = app.test_client()
    assert login(client, *VIEWER).status_code == 302
    return client


@pytest.fixture
def admin_logged_in(app, users):
    client = app.test_client()
    assert login(client, *ADMIN).status_code == 302
    return client


@pytest.fixture
def hostile(app, users, tmp_path):
    """Rows of every kind whose text fields hold markup, and their ids."""
    with app.app_context():
        create_builtin_templates()
        webhook = WebhookEndpoint(
            name=HOSTILE, url=SECRET_WEBHOOK_URL, format="backwatch", enabled=True,
            min_severity=Severity.WARNING, secret_encrypted=encrypt_secret("a-long-shared-secret-value"),
        )
        db.session.add(webhook)
        job, _ = BackupJob.create(HOSTILE, description=f"description {HOSTILE}")
        backend = StorageBackend(name=HOSTILE, kind="local", path=str(tmp_path), capacity_bytes=1000)
        db.session.add_all([job, backend])
        db.session.commit()
        for day in range(5):
            db.session.add(UsageReading(
                backend_id=backend.id, measured_at=utcnow() - timedelta(days=5 - day),
                used_bytes=500 + 50 * day, capacity_bytes=1000,
            ))
        run = BackupRun(
            job_id=job.id, status="failure", finished_at=utcnow(), error=f"{SCRIPT} {HOSTILE}",
            log_tail=f"{SCRIPT}\n{HOSTILE}", storage_backend=HOSTILE, object_key=HOSTILE,
        )
        db.session.add(run)
        db.session.commit()
        alert, _ = create_backup_alert_with_notifications(
            "BACKUP_FAILURE", Severity.CRITICAL, f"Backup of {HOSTILE} failed: {SCRIPT}",
            {"error": SCRIPT}, job=job, run=run,
        )
        commit_and_dispatch()
        silence = Silence(
            job_id=job.id, starts_at=utcnow(), ends_at=utcnow() + timedelta(hours=1),
            reason=f"maintenance {HOSTILE}", created_by_id=users["admin"],
        )
        token, _ = ApiToken.create(db.session.get(User, users["admin"]), HOSTILE)
        db.session.add_all([silence, token])
        db.session.commit()
        ids = {
            "job": job.id, "run": run.id, "alert": alert.id, "storage": backend.id, "webhook": webhook.id,
            "silence": silence.id, "api_token": token.id,
        }
        db.session.remove()
        return ids


# Login sessions


def test_login_makes_session_permanent(app, client, users):
    response = login(client, *ADMIN)
    assert response.status_code == 302
    with client.session_transaction() as session:
        assert session.permanent
    cookie = client.get_cookie("session")
    lifetime = app.permanent_session_lifetime
    assert cookie.expires is not None
    remaining = cookie.expires.timestamp() - time.time()
    assert lifetime.total_seconds() - 60 < remaining <= lifetime.total_seconds() + 1


def test_session_refreshed_on_activity(client, users):
    login(client, *ADMIN)
    response = client.get("/admin/")
    assert response.status_code == 200
    assert any(header.startswith("session=") for header in response.headers.getlist("Set-Cookie"))


def signed_session_cookie(app, client, age, monkeypatch):
    """Return the client's session cookie signed again as if `age` had passed since its last request."""
    serializer = app.session_interface.get_signing_serializer(app)
    data = serializer.loads(client.get_cookie("session").value)
    with monkeypatch.context() as patch:
        real_timestamp = TimestampSigner.get_timestamp
        patch.setattr(TimestampSigner, "get_timestamp", lambda signer: real_timestamp(signer) - int(age.total_seconds()))
        return serializer.dumps(data)


@pytest.mark.parametrize("hours_past_lifetime, logged_in", [(-1, True), (1, False)])
def test_session_expires_after_lifetime(app, client, users, monkeypatch, hours_past_lifetime, logged_in):
    login(client, *ADMIN)
    assert client.get("/admin/").status_code == 200
    age = app.permanent_session_lifetime + timedelta(hours=hours_past_lifetime)
    # Sent by a client whose clock ignores the cookie's Expires attribute.
    client.set_cookie("session", signed_session_cookie(app, client, age, monkeypatch))
    response = client.get("/admin/")
    if logged_in:
        assert response.status_code == 200
    else:
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


def test_session_cookie_secure_for_https(app, database_url, redis_url):
    https_app = create_app({
        "TESTING": True, "SECRET_KEY": "test-secret-key", "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url, "BASE_URL": "https://backwatch.example.com",
    })
    assert https_app.config["SESSION_COOKIE_SECURE"] is True
    assert app.config["SESSION_COOKIE_SECURE"] is False
    secure = session_set_cookie(https_app.test_client().get("/login"))
    assert "; Secure" in secure
    assert "; HttpOnly" in secure
    assert "; SameSite=Lax" in secure
    plain = session_set_cookie(app.test_client().get("/login"))
    assert "; Secure" not in plain


def session_set_cookie(response):
    [header] = [value for value in response.headers.getlist("Set-Cookie") if value.startswith("session=")]
    return header


def test_csrf_token_valid_for_whole_session(app, client, users, monkeypatch):
    login(client, *ADMIN)
    with client.session_transaction() as session:
        raw_token = session["csrf_token"]
    # Flask-WTF's token format: the session's raw token, signed with a timestamp.
    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="wtf-csrf-token")
    with monkeypatch.context() as patch:
        real_timestamp = TimestampSigner.get_timestamp
        patch.setattr(TimestampSigner, "get_timestamp", lambda signer: real_timestamp(signer) - 3 * 3600)
        token = serializer.dumps(raw_token)
    response = client.post("/admin/password/", data=password_form(token, current="not my password"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "the current password is wrong" in page
    assert "CSRF" not in page


def test_logout_needs_post_with_csrf(client, users):
    login(client, *ADMIN)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert client.get("/admin/").status_code == 302


def test_session_of_older_format_logged_out(client, users):
    login(client, *ADMIN)
    with client.session_transaction() as session:
        session["_user_id"] = str(users["admin"])
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")


def test_deactivated_user_logged_out(app, viewer_client, users):
    assert viewer_client.get("/admin/").status_code == 200
    with app.app_context():
        db.session.get(User, users["viewer"]).is_active_user = False
        db.session.commit()
    assert viewer_client.get("/admin/").status_code == 302
    assert login(app.test_client(), *VIEWER).status_code == 401


# Password change


def password_form(token, current=VIEWER[1], new="a brand new passphrase", again=None):
    return {
        "csrf_token": token, "current_password": current, "new_password": new,
        "confirm_password": new if again is None else again,
    }


def test_password_change_ends_other_sessions(app, viewer_client, users):
    other_session = app.test_client()
    login(other_session, *VIEWER)
    assert other_session.get("/admin/").status_code == 200

    token = csrf_token(viewer_client)
    response = viewer_client.post("/admin/password/", data=password_form(token))
    assert response.status_code == 302
    assert "Password changed" in viewer_client.get("/admin/password/").get_data(as_text=True)

    assert viewer_client.get("/admin/").status_code == 200
    assert other_session.get("/admin/").status_code == 302
    assert login(app.test_client(), *VIEWER).status_code == 401
    assert login(app.test_client(), VIEWER[0], "a brand new passphrase").status_code == 302
    with app.app_context():
        stored = db.session.get(User, users["viewer"]).password_hash
        assert "a brand new passphrase" not in stored
        assert stored.startswith(("scrypt:", "pbkdf2:"))


@pytest.mark.parametrize(
    "fields, field, message",
    [
        ({"current": "not my password"}, "current_password", "the current password is wrong"),
        ({"new": "short one", "again": "short one"}, "new_password", "between 12 and 1024 characters"),
        ({"again": "a different passphrase"}, "confirm_password", "the two new passwords differ"),
        ({"new": VIEWER[1]}, "new_password", "the new password must differ from the current one"),
        ({"current": ""}, "current_password", "This field is required."),
        ({"new": "x" * 1025}, "new_password", "between 12 and 1024 characters"),
    ],
)
def test_password_change_rejects_invalid(app, viewer_client, users, fields, field, message):
    other_session = app.test_client()
    login(other_session, *VIEWER)
    with app.app_context():
        before = db.session.get(User, users["viewer"]).password_hash
    token = csrf_token(viewer_client)
    response = viewer_client.post("/admin/password/", data=password_form(token, **fields))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert f'id="{field}"' in page
    with app.app_context():
        assert db.session.get(User, users["viewer"]).password_hash == before
    assert other_session.get("/admin/").status_code == 200


def test_password_change_requires_csrf(app, viewer_client, users):
    response = viewer_client.post("/admin/password/", data=password_form(""))
    assert response.status_code == 400
    assert login(app.test_client(), *VIEWER).status_code == 302


def test_admin_password_reset_ends_sessions(app, admin_logged_in, viewer_client, users):
    path = f"/admin/users/edit/?id={users['viewer']}"
    response = admin_logged_in.post(path, data={
        "csrf_token": csrf_token(admin_logged_in, path), "email": VIEWER[0], "is_active_user": "y",
        "timezone": "UTC", "password": "reset by the admin 1",
    })
    assert response.status_code == 302
    assert viewer_client.get("/admin/").status_code == 302
    assert login(app.test_client(), VIEWER[0], "reset by the admin 1").status_code == 302


# Roles


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/backups/jobs/",
        "/admin/backups/jobs/details/?id={job}",
        "/admin/backups/runs/",
        "/admin/backups/runs/details/?id={run}",
        "/admin/backups/alerts/",
        "/admin/backups/alerts/details/?id={alert}",
        "/admin/storage/",
        "/admin/storage/details/?id={storage}",
        "/admin/notifications/deliveries/",
        "/admin/notifications/",
        "/admin/preferences/",
        "/admin/password/",
    ],
)
def test_user_reads_shared_pages(viewer_client, hostile, path):
    response = viewer_client.get(path.format(**hostile))
    assert response.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users/",
        "/admin/users/edit/?id={admin}",
        "/admin/notifications/templates/",
        "/admin/notifications/webhooks/",
        "/admin/notifications/webhooks/details/?id={webhook}",
        "/admin/preferences/{admin}",
    ],
)
def test_user_cannot_open_admin_pages(viewer_client, users, hostile, path):
    response = viewer_client.get(path.format(**users, **hostile))
    assert response.status_code == 403


def test_user_menu_and_buttons_hidden(viewer_client, hostile):
    menu = viewer_client.get("/admin/").get_data(as_text=True)
    for path in ("/admin/users/", "/admin/notifications/templates/", "/admin/notifications/webhooks/"):
        assert f'href="{path}"' not in menu
    assert 'href="/admin/notifications/deliveries/"' in menu

    for path in ("/admin/backups/jobs/", "/admin/storage/", "/admin/notifications/deliveries/"):
        page = viewer_client.get(path).get_data(as_text=True)
        assert f'href="{path}new/' not in page
        assert f'{path}edit/' not in page
        assert f'action="{path}delete/"' not in page
        assert "modelActions.execute(" not in page

    details = viewer_client.get(f"/admin/storage/details/?id={hostile['storage']}").get_data(as_text=True)
    assert "/admin/storage/edit/" not in details


def test_admin_sees_buttons(admin_logged_in, hostile):
    storage = admin_logged_in.get("/admin/storage/").get_data(as_text=True)
    assert 'href="/admin/storage/new/' in storage
    assert "/admin/storage/edit/" in storage
    assert 'action="/admin/storage/delete/"' in storage
    deliveries = admin_logged_in.get("/admin/notifications/deliveries/").get_data(as_text=True)
    assert "modelActions.execute('retry')" in deliveries


def test_user_cannot_change_data(app, viewer_client, users, hostile, tmp_path):
    token = csrf_token(viewer_client)
    before = database_snapshot(app)
    attempts = [
        ("/admin/storage/new/", {"name": "new-backend", "kind": "local", "path": str(tmp_path), "enabled": "y"}),
        (f"/admin/storage/edit/?id={hostile['storage']}", {"name": "renamed", "kind": "local", "path": str(tmp_path)}),
        ("/admin/storage/delete/", {"id": hostile["storage"]}),
        ("/admin/storage/action/", {"action": "delete", "rowid": hostile["storage"]}),
        ("/admin/storage/action/", {"action": "measure", "rowid": hostile["storage"]}),
        ("/admin/backups/jobs/new/", {"name": "new-job"}),
        (f"/admin/backups/jobs/edit/?id={hostile['job']}", {"name": "renamed", "baseline_window": "5"}),
        ("/admin/backups/jobs/delete/", {"id": hostile["job"]}),
        ("/admin/notifications/deliveries/action/", {"action": "retry", "rowid": "1"}),
        ("/admin/notifications/webhooks/new/", {"name": "hook", "url": "https://example.com/", "format": "backwatch"}),
        (f"/admin/notifications/webhooks/test/{hostile['webhook']}", {}),
        ("/admin/users/new/", {"email": "new@example.com", "password": "a long password 1", "timezone": "UTC"}),
        (f"/admin/users/edit/?id={users['viewer']}", {"email": VIEWER[0], "is_platform_admin": "y", "is_active_user": "y"}),
        ("/admin/backups/jobs/ajax/update/", {"list_form_pk": hostile["job"], "name": "renamed"}),
    ]
    for path, data in attempts:
        response = viewer_client.post(path, data={"csrf_token": token, **data})
        assert response.status_code in (302, 403), path
        if response.status_code == 302:
            assert "/login" not in response.headers["Location"], path
    assert database_snapshot(app) == before


def test_every_change_route_refuses_users(app, viewer_client, hostile):
    """Walk every post route of every console view as a user who is not a platform admin."""
    token = csrf_token(viewer_client)
    before = database_snapshot(app)
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin/") or "POST" not in rule.methods:
            continue
        view = view_of(app, rule.endpoint)
        name = rule.endpoint.split(".", 1)[1]
        if isinstance(view, AdminOnlyMixin):
            expected = 403
        elif isinstance(view, AdminWritesMixin):
            if name in view.user_actions:
                continue
            expected = 302 if name in FLASK_ADMIN_FORM_VIEWS else 403
        else:
            assert view.endpoint in OWN_DATA_VIEWS, (
                f"{type(view).__name__} accepts posts from every user; "
                "base it on SecureModelView, AdminWritesMixin or AdminOnlyMixin"
            )
            continue
        # Each action of a model view, with a real row id, is one request.
        row_ids = _row_ids(app, view)
        requests = [{}]
        if name == "action_view":
            requests = [
                {"action": action, "rowid": row_ids} for action, _ in view._actions if action not in view.user_actions
            ]
        elif name == "delete_view":
            requests = [{"id": row_id} for row_id in row_ids[:1]]
        for data in requests:
            response = viewer_client.post(fill_rule(rule), data={"csrf_token": token, **data})
            assert response.status_code == expected, (rule.rule, data, response.status_code)
            checked.append(rule.rule)
    assert "/admin/notifications/deliveries/action/" in checked
    assert "/admin/notifications/webhooks/test/<int:endpoint_id>" in checked
    assert database_snapshot(app) == before


def test_model_views_gate_changes_in_requests(app, users):
    """Every model view's can_* flags and actions are admin-only, unless opened in user_actions."""
    model_views = [view for view in admin_views(app) if isinstance(view, BaseModelView)]
    assert len(model_views) >= 8
    for view in model_views:
        assert isinstance(view, (AdminWritesMixin, AdminOnlyMixin)), type(view).__name__
        # The flags depend on current_user, so they are read inside a request of that user.
        with app.test_request_context():
            login_user(db.session.get(User, users["viewer"]))
            for operation in ("create", "edit", "delete"):
                if operation not in view.user_actions:
                    assert getattr(view, f"can_{operation}") is False, (type(view).__name__, operation)
            for action, _ in view._actions:
                if action not in view.user_actions:
                    assert not view.is_action_allowed(action), (type(view).__name__, action)
            db.session.remove()
    with app.test_request_context():
        login_user(db.session.get(User, users["admin"]))
        storage = view_of(app, "storage.index_view")
        assert storage.can_create
        assert storage.can_edit
        assert storage.can_delete
        assert view_of(app, "deliveries.index_view").is_action_allowed("retry")
        db.session.remove()


def _row_ids(app, view):
    if not isinstance(view, BaseModelView):
        return ["1"]
    with app.app_context():
        ids = db.session.scalars(db.select(view.model.id).order_by(view.model.id).limit(2)).all()
        db.session.remove()
    return [str(row_id) for row_id in ids] or ["1"]


def test_deliveries_hide_addresses_from_users(app, viewer_client, admin_logged_in, hostile):
    with app.app_context():
        addresses = set(db.session.scalars(db.select(Delivery.address)).all())
    assert SECRET_WEBHOOK_URL in addresses
    assert ADMIN[0] in addresses
    assert VIEWER[0] in addresses

    page = viewer_client.get("/admin/notifications/deliveries/").get_data(as_text=True)
    assert SECRET_WEBHOOK_URL not in page
    assert ADMIN[0] not in page
    assert VIEWER[0] in page
    assert "hidden" in page
    with app.app_context():
        webhook_delivery = db.session.scalar(db.select(Delivery.id).where(Delivery.address == SECRET_WEBHOOK_URL))
    details = viewer_client.get(f"/admin/notifications/deliveries/details/?id={webhook_delivery}")
    assert SECRET_WEBHOOK_URL not in details.get_data(as_text=True)

    search = viewer_client.get("/admin/notifications/deliveries/?search=secretpart").get_data(as_text=True)
    assert f"details/?id={webhook_delivery}" not in search
    admin_search = admin_logged_in.get("/admin/notifications/deliveries/?search=secretpart").get_data(as_text=True)
    assert SECRET_WEBHOOK_URL in admin_search


# Users page


def user_form(token, **fields):
    form = {"csrf_token": token, "email": "new.user@example.com", "is_active_user": "y", "timezone": "UTC",
            "password": "a long password 1"}
    form.update(fields)
    return {key: value for key, value in form.items() if value is not None}


def test_admin_creates_user(app, admin_logged_in, users):
    token = csrf_token(admin_logged_in, "/admin/users/new/")
    response = admin_logged_in.post("/admin/users/new/", data=user_form(token, email=" New.User@Example.com "))
    assert response.status_code == 302
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.email == "new.user@example.com")).scalar_one()
        assert not user.is_platform_admin
        assert user.password_hash != "a long password 1"
    assert login(app.test_client(), "new.user@example.com", "a long password 1").status_code == 302


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"email": "not-an-email"}, "Invalid email address."),
        ({"email": VIEWER[0].upper()}, f"another user already has the address {VIEWER[0]}"),
        ({"password": "too short"}, "between 12 and 1024 characters"),
        ({"password": None}, "a new user needs a password"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"phone_number": "0446681800"}, "E.164"),
    ],
)
def test_user_create_rejects_invalid(app, admin_logged_in, users, fields, message):
    token = csrf_token(admin_logged_in, "/admin/users/new/")
    response = admin_logged_in.post("/admin/users/new/", data=user_form(token, **fields))
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(User)) == 2


def edit_user(client, user_id, **fields):
    path = f"/admin/users/edit/?id={user_id}"
    token = csrf_token(client, path)
    return client.post(path, data=user_form(token, password=None, **fields), follow_redirects=True)


def test_admin_makes_admin_and_deactivates(app, admin_logged_in, viewer_client, users):
    response = edit_user(admin_logged_in, users["viewer"], email=VIEWER[0], is_platform_admin="y")
    assert response.status_code == 200
    assert viewer_client.get("/admin/users/").status_code == 200

    edit_user(admin_logged_in, users["viewer"], email=VIEWER[0], is_platform_admin="y", is_active_user=None)
    with app.app_context():
        viewer = db.session.get(User, users["viewer"])
        assert viewer.is_platform_admin
        assert not viewer.is_active_user
    assert viewer_client.get("/admin/").status_code == 302


@pytest.mark.parametrize(
    "change",
    [{"is_platform_admin": None}, {"is_active_user": None, "is_platform_admin": "y"}],
    ids=["demote", "deactivate"],
)
def test_last_admin_kept(app, admin_logged_in, users, change):
    response = edit_user(admin_logged_in, users["admin"], email=ADMIN[0], **change)
    assert "is the last active platform admin" in response.get_data(as_text=True)
    with app.app_context():
        admin = db.session.get(User, users["admin"])
        assert admin.is_platform_admin
        assert admin.is_active_user
    assert admin_logged_in.get("/admin/users/").status_code == 200


def test_admin_demoted_when_another_exists(app, admin_logged_in, users):
    edit_user(admin_logged_in, users["viewer"], email=VIEWER[0], is_platform_admin="y")
    edit_user(admin_logged_in, users["admin"], email=ADMIN[0], is_platform_admin=None)
    with app.app_context():
        assert not db.session.get(User, users["admin"]).is_platform_admin
    assert admin_logged_in.get("/admin/users/").status_code == 403
    # Now the former viewer is the last admin, and keeps the role.
    other = app.test_client()
    login(other, *VIEWER)
    response = edit_user(other, users["viewer"], email=VIEWER[0], is_platform_admin=None)
    assert "is the last active platform admin" in response.get_data(as_text=True)


def test_admins_demoting_each_other_keep_one(app, admin_logged_in, users, monkeypatch):
    from app.admin import notification_views

    edit_user(admin_logged_in, users["viewer"], email=VIEWER[0], is_platform_admin="y")
    second_admin = app.test_client()
    login(second_admin, *VIEWER)
    # Each request demotes the other admin. Both wait at the barrier, then run
    # the last-admin check at the same time.
    barrier = threading.Barrier(2, timeout=10)
    real_check = notification_views._keep_an_active_admin

    def check_together(user):
        barrier.wait()
        real_check(user)

    monkeypatch.setattr(notification_views, "_keep_an_active_admin", check_together)
    requests = [
        (admin_logged_in, users["viewer"], VIEWER[0]),
        (second_admin, users["admin"], ADMIN[0]),
    ]
    forms = [(client, f"/admin/users/edit/?id={user_id}", email) for client, user_id, email in requests]
    forms = [(client, path, user_form(csrf_token(client, path), email=email, password=None)) for client, path, email in forms]
    responses = []
    threads = [
        threading.Thread(target=lambda c=client, p=path, d=data: responses.append(c.post(p, data=d)))
        for client, path, data in forms
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(responses) == 2
    with app.app_context():
        admins = db.session.scalars(db.select(User.email).where(User.is_platform_admin.is_(True))).all()
    assert len(admins) == 1
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200, 302]


def test_users_not_deleted(app, admin_logged_in, users):
    token = csrf_token(admin_logged_in, "/admin/users/")
    admin_logged_in.post("/admin/users/delete/", data={"csrf_token": token, "id": users["viewer"]})
    admin_logged_in.post("/admin/users/action/", data={"csrf_token": token, "action": "delete", "rowid": users["viewer"]})
    with app.app_context():
        assert db.session.get(User, users["viewer"]) is not None


# CSRF and login on every route


def test_every_console_post_requires_csrf(app, admin_logged_in, hostile):
    before = database_snapshot(app)
    checked = []
    for rule in app.url_map.iter_rules():
        if not (rule.rule.startswith("/admin/") or rule.rule in ("/logout", "/login")):
            continue
        for method in sorted(rule.methods - {"GET", "HEAD", "OPTIONS"}):
            response = admin_logged_in.open(fill_rule(rule), method=method, data={"id": "1"})
            assert response.status_code == 400, (method, rule.rule)
            assert "The CSRF token is missing." in response.get_data(as_text=True), rule.rule
            checked.append(rule.rule)
    assert {"/logout", "/login", "/admin/password/", "/admin/users/new/"} <= set(checked)
    assert database_snapshot(app) == before
    assert admin_logged_in.get("/admin/").status_code == 200


def test_every_page_requires_login(app, client, hostile):
    checked = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule in PUBLIC_GET_RULES or rule.rule.startswith(PUBLIC_PREFIXES):
            continue
        path = fill_rule(rule)
        response = client.get(path)
        if rule.rule.startswith("/api/"):
            assert response.status_code == 401, path
            assert response.json["error"]["field"] == "session", path
        else:
            assert response.status_code == 302, path
            assert response.headers["Location"].startswith("/login"), path
        checked.append(rule.rule)
    assert {"/", "/admin/", "/admin/users/", "/admin/password/", "/api/v1/alerts"} <= set(checked)


def test_public_routes_respond_without_login(client):
    assert client.get("/login").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/openapi.json").status_code == 200
    assert client.get("/static/backwatch.css").status_code == 200
    # Closed by its own settings, not by the console login.
    assert client.get("/metrics").status_code == 403
    assert client.get("/ping/dummy-token").status_code == 404
    assert client.post("/hooks/dummy-token", json={"status": "success"}).status_code == 404


# Escaping


class PostFormChecker(HTMLParser):
    """Collects the POST forms of a page and whether each carries a CSRF token."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self._current = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form" and (attributes.get("method") or "").lower() == "post":
            self._current = {"action": attributes.get("action"), "csrf": False}
            self.forms.append(self._current)
        elif tag == "input" and self._current is not None and attributes.get("name") == "csrf_token":
            self._current["csrf"] = bool(attributes.get("value"))

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


def console_pages(app, hostile, users):
    """Return the path of every console page: each view's list, search, details, edit and create pages, and the rest."""
    paths = {"/admin/", f"/admin/preferences/{users['viewer']}"}
    for view in admin_views(app):
        if not isinstance(view, BaseModelView):
            continue
        base = view.url.rstrip("/") + "/"
        paths.add(base)
        paths.add(f"{base}?search={quote(HOSTILE)}")
        paths.add(f"{base}new/")
        for row_id in _row_ids(app, view):
            paths.add(f"{base}details/?id={row_id}")
            paths.add(f"{base}edit/?id={row_id}")
    known_ids = sorted({str(value) for value in [*hostile.values(), *users.values()]})
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin/") or "GET" not in rule.methods or "static" in rule.endpoint:
            continue
        if "export" in rule.endpoint or "ajax" in rule.endpoint:
            continue
        if "<int:" in rule.rule:
            paths.update(fill_rule(rule, row_id) for row_id in known_ids)
        else:
            paths.add(fill_rule(rule))
    return sorted(paths)


def test_console_pages_escape_user_text(app, admin_logged_in, hostile, users):
    pages_shown = []
    # Collected rather than asserted one by one, so a failure lists every page at fault.
    problems = []
    for path in console_pages(app, hostile, users):
        response = admin_logged_in.get(path)
        if response.status_code not in (200, 302, 404):
            problems.append((path, f"status {response.status_code}"))
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        page = response.get_data(as_text=True)
        problems.extend((path, f"unescaped {marker}") for marker in RAW_MARKERS if marker in page)
        checker = PostFormChecker()
        checker.feed(page)
        problems.extend((path, f"form without CSRF token: {form['action']}") for form in checker.forms if not form["csrf"])
        if HOSTILE_ESCAPED in page:
            pages_shown.append(path)
    assert problems == []

    expected = [
        "/admin/",
        "/admin/backups/jobs/",
        f"/admin/backups/jobs/details/?id={hostile['job']}",
        f"/admin/backups/jobs/edit/?id={hostile['job']}",
        f"/admin/backups/runs/details/?id={hostile['run']}",
        "/admin/backups/alerts/",
        f"/admin/backups/alerts/details/?id={hostile['alert']}",
        "/admin/storage/",
        f"/admin/storage/details/?id={hostile['storage']}",
        f"/admin/storage/edit/?id={hostile['storage']}",
        "/admin/notifications/",
        "/admin/notifications/webhooks/",
        f"/admin/notifications/webhooks/details/?id={hostile['webhook']}",
        f"/admin/notifications/webhooks/edit/?id={hostile['webhook']}",
        "/admin/api-tokens/",
    ]
    for path in expected:
        assert path in pages_shown, path


def test_storage_chart_escapes_name(admin_logged_in, hostile):
    page = admin_logged_in.get(f"/admin/storage/details/?id={hostile['storage']}").get_data(as_text=True)
    chart = page[page.index('<svg class="chart"'):page.index("</svg>")]
    assert f"Use of {HOSTILE_ESCAPED}" in chart
    assert "<img" not in chart


def test_run_page_escapes_error_and_log(admin_logged_in, hostile):
    page = admin_logged_in.get(f"/admin/backups/runs/details/?id={hostile['run']}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert SCRIPT not in page


def test_alert_email_escapes_job_name(app, ctx, smtp_server, run_worker, users, hostile):
    assert run_worker() == []
    messages = [message for _, rcpt_tos, message in smtp_server.messages if ADMIN[0] in rcpt_tos]
    assert len(messages) == 1
    html = messages[0].get_body(("html",)).get_content()
    for marker in RAW_MARKERS:
        assert marker not in html
    assert f'">{HOSTILE_ESCAPED}</a>' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    text = messages[0].get_body(("plain",)).get_content()
    assert f"Job: {HOSTILE}" in text


def test_digest_email_escapes_job_name(app, ctx, smtp_server, run_worker, users, hostile):
    from app.monitoring.lifecycle import send_alert_digest

    run_worker()
    smtp_server.handler.messages.clear()
    send_alert_digest()
    commit_and_dispatch()
    assert run_worker() == []
    [(_, _, message)] = smtp_server.messages
    assert "digest" in message["Subject"]
    html = message.get_body(("html",)).get_content()
    for marker in RAW_MARKERS:
        assert marker not in html
    assert f"<h3>{HOSTILE_ESCAPED}</h3>" in html
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(AlertEvent).where(AlertEvent.event == "digest")) == 1
        assert db.session.scalar(db.select(NotificationTemplate.id).where(NotificationTemplate.name == "backup_alert_digest"))
