"""The alert list and an alert's page: filters, search, sorting, and
acknowledging and resolving one alert or many.

Every logged-in user may acknowledge and resolve. The lifecycle functions
change an alert only from a status that allows it, so a second click, or
a person and a worker at the same moment, changes it once and sends one
"resolved" event.
"""

from dataclasses import dataclass, field

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual, FilterLike, FilterNotEqual
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import case, func
from sqlalchemy.orm import joinedload

from app.admin.formatting import (
    filtered_list_url,
    human_duration,
    human_size,
    relative_time,
    time_stamp,
)
from app.admin.views import SecureModelView, column_severity
from app.extensions import db
from app.models import Alert, AlertEvent, Delivery, Severity, Silence
from app.models.alerts import ALERT_STATUSES, ALERT_TYPES
from app.monitoring.lifecycle import acknowledge_alert, resolve_alert
from app.notifications.dispatcher import commit_and_dispatch

# An alert's page lists at most this many events (the newest) and deliveries.
EVENTS_SHOWN = 100
DELIVERIES_SHOWN = 500
# A bulk action changes at most this many alerts. The list itself shows at most 100 per page.
BULK_MAX = 1000

SEVERITY_OPTIONS = [(str(s.value), s.name) for s in sorted(Severity, reverse=True)]
STATUS_OPTIONS = [(s, s) for s in ALERT_STATUSES]
# Sorting by status puts open alerts first: ACTIVE, then ACKNOWLEDGED, then RESOLVED.
STATUS_RANK = case({"ACTIVE": 0, "ACKNOWLEDGED": 1, "RESOLVED": 2}, value=Alert.status, else_=3)


class OptionFilter:
    """Accept only a value from the filter's options.

    Flask-Admin flashes "Invalid Filter Value" and ignores such a filter,
    where the severity column would otherwise fail on an unknown name.
    """

    def validate(self, value):
        return value in {str(option) for option, _ in self.get_options(None) or ()}


class OptionFilterEqual(OptionFilter, FilterEqual):
    pass


class OptionFilterNotEqual(OptionFilter, FilterNotEqual):
    pass


def _moment(view, context, model, name):
    moment = getattr(model, name)
    if moment is None:
        return ""
    return Markup('<span title="{}">{}</span><br><small class="text-muted">{}</small>').format(
        moment.isoformat(), time_stamp(moment), relative_time(moment))


def _job_or_backend(view, context, model, name):
    if model.job_id is not None and model.job is not None:
        return Markup('<a href="{}">{}</a>').format(url_for("jobs.details_view", id=model.job_id), model.job.name)
    if model.storage_backend:
        return Markup('storage <a href="{}">{}</a>').format(
            filtered_list_url("alerts", (Alert.storage_backend, FilterEqual, model.storage_backend)),
            model.storage_backend,
        )
    return ""


def _message(view, context, model, name):
    return Markup('<a href="{}">{}</a>').format(url_for(".details_view", id=model.id), model.message)


def detail_items(details):
    """Return the alert's details dict as (label, text) pairs for a definition list.

    Sizes and durations read as people write them, and nested dicts and
    lists become one line of text, which the page escapes like any other.
    """
    items = []
    for key, value in (details or {}).items():
        label = str(key).replace("_", " ")
        if isinstance(value, bool) or value is None:
            text = {True: "yes", False: "no", None: "none"}[value]
        elif isinstance(value, (int, float)) and str(key).endswith("_bytes"):
            text = f"{human_size(value)} ({value:,} bytes)" if abs(value) >= 1024 else f"{value:,} bytes"
        elif isinstance(value, (int, float)) and str(key).endswith("_seconds"):
            text = f"{human_duration(value)} ({value:,} s)" if abs(value) >= 60 else f"{value:,} s"
        elif isinstance(value, dict):
            text = ", ".join(f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            text = ", ".join(str(v) for v in value)
        else:
            text = str(value)
        items.append((label, text))
    return items


@dataclass
class EventRow:
    event: AlertEvent
    deliveries: list = field(default_factory=list)
    # The silence that kept the event from being sent, if one did.
    silence: Silence | None = None
    silence_id: int | None = None


def alert_history(alert_id, events_shown=EVENTS_SHOWN, deliveries_shown=DELIVERIES_SHOWN):
    """Return (rows, events_total, deliveries_cut) for an alert's page, oldest event first.

    Four queries whatever the history's length: the count, the newest
    `events_shown` events, their deliveries (at most `deliveries_shown`),
    and the silences that muted any of them.
    """
    total = db.session.scalar(db.select(func.count()).select_from(AlertEvent).where(AlertEvent.alert_id == alert_id))
    events = db.session.execute(
        db.select(AlertEvent).where(AlertEvent.alert_id == alert_id)
        .order_by(AlertEvent.created_at.desc(), AlertEvent.id.desc())
        .limit(events_shown)
    ).scalars().all()
    events.reverse()
    rows = {event.id: EventRow(event=event, silence_id=(event.payload or {}).get("silenced_by")) for event in events}
    deliveries = []
    if rows:
        deliveries = db.session.execute(
            db.select(Delivery).where(Delivery.alert_event_id.in_(list(rows)))
            .options(joinedload(Delivery.user), joinedload(Delivery.webhook_endpoint))
            .order_by(Delivery.alert_event_id, Delivery.id)
            .limit(deliveries_shown + 1)
        ).scalars().all()
    for delivery in deliveries[:deliveries_shown]:
        rows[delivery.alert_event_id].deliveries.append(delivery)
    silence_ids = {row.silence_id for row in rows.values() if isinstance(row.silence_id, int)}
    if silence_ids:
        silences = {s.id: s for s in db.session.execute(db.select(Silence).where(Silence.id.in_(silence_ids))).scalars()}
        for row in rows.values():
            row.silence = silences.get(row.silence_id)
    return list(rows.values()), total, len(deliveries) > deliveries_shown


def change_alerts(alert_ids, change):
    """Apply acknowledge_alert or resolve_alert to each alert, then commit and dispatch once.

    Returns (changed, skipped, missing): alerts changed, alerts whose status
    did not allow the change, and ids that match no alert.
    """
    user = current_user._get_current_object()
    existing = db.session.execute(db.select(Alert.id).where(Alert.id.in_(alert_ids))).scalars().all()
    changed = 0
    for alert_id in sorted(existing):
        if change(alert_id, user) is not None:
            changed += 1
    commit_and_dispatch()
    return changed, len(existing) - changed, len(set(alert_ids)) - len(existing)


# Alert ids are 32-bit integers in PostgreSQL; a larger number matches no alert.
MAX_ALERT_ID = 2**31 - 1


def _parse_id(value):
    """Return `value` as an alert id, or None when it cannot be one."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ALERT_ID else None


def _parse_ids(values):
    return {number for number in map(_parse_id, values) if number is not None}


def _flash_result(verb, changed, skipped, missing, skipped_reason):
    noun = "alert" if changed == 1 else "alerts"
    parts = [f"{verb} {changed} {noun}."]
    if skipped:
        parts.append(f"Skipped {skipped} that {'was' if skipped == 1 else 'were'} {skipped_reason}.")
    if missing:
        parts.append(f"{missing} not found.")
    flash(" ".join(parts), "success" if changed else "warning")


class AlertView(SecureModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    # Every logged-in user may acknowledge and resolve, in bulk or one by one.
    user_actions = ("acknowledge", "resolve", "acknowledge_one", "resolve_one")
    # Filter arguments by name ("flt0_status_equals=ACTIVE"), so links to a filtered list stay readable.
    named_filter_urls = True
    list_template = "admin/alert_list.html"
    details_template = "admin/alert_details.html"
    page_size_options = (20, 50, 100)
    # "subject" is not a relationship, so Flask-Admin would not load the job with the page by itself.
    column_select_related_list = (Alert.job,)

    column_list = (
        "id", "severity", "alert_type", "status", "subject", "message", "occurrences", "created_at", "last_seen_at",
    )
    column_labels = {
        "alert_type": "Type", "subject": "Job or backend", "created_at": "Created", "last_seen_at": "Last seen",
        "acknowledged_at": "Acknowledged", "resolved_at": "Resolved", "dedup_key": "deduplication key",
    }
    # The id ends every sort, so pages do not overlap when the first key ties.
    column_default_sort = [("last_seen_at", True), ("id", True)]
    column_sortable_list = (
        "id",
        ("severity", ("severity", "last_seen_at", "id")),
        "alert_type",
        ("status", (STATUS_RANK, "id")),
        "occurrences",
        ("created_at", ("created_at", "id")),
        ("last_seen_at", ("last_seen_at", "id")),
    )
    column_filters = (
        OptionFilterEqual(Alert.severity, "Severity", options=SEVERITY_OPTIONS),
        OptionFilterEqual(Alert.alert_type, "Type", options=[(t, t) for t in ALERT_TYPES]),
        OptionFilterEqual(Alert.status, "Status", options=STATUS_OPTIONS),
        OptionFilterNotEqual(Alert.status, "Status", options=STATUS_OPTIONS),
        FilterEqual("job.name", "Job"),
        FilterLike("job.name", "Job"),
        FilterEqual(Alert.storage_backend, "Backend"),
        FilterLike(Alert.storage_backend, "Backend"),
        "created_at",
        "last_seen_at",
    )
    column_searchable_list = ("message", "dedup_key")
    column_formatters = {
        "severity": column_severity,
        "subject": _job_or_backend,
        "message": _message,
        "created_at": _moment,
        "last_seen_at": _moment,
    }

    @property
    def can_edit(self):
        return False


    def get_one(self, id):
        """Load the alert with its job, run and the people who acknowledged and resolved it."""
        alert_id = _parse_id(id)
        if alert_id is None:
            return None
        return db.session.get(Alert, alert_id, options=[
            joinedload(Alert.job), joinedload(Alert.run), joinedload(Alert.acknowledged_by), joinedload(Alert.resolved_by),
        ])

    def render(self, template, **kwargs):
        kwargs.update(
            time_stamp=time_stamp, relative_time=relative_time, human_size=human_size, human_duration=human_duration,
        )
        if template == self.list_template:
            kwargs["quick_filters"] = self._quick_filters()
        if template == self.details_template and kwargs.get("model") is not None:
            model = kwargs["model"]
            kwargs["details"] = detail_items(model.details)
            kwargs["history"], kwargs["events_total"], kwargs["deliveries_cut"] = alert_history(model.id)
            kwargs["events_shown"] = EVENTS_SHOWN
        return super().render(template, **kwargs)

    def _quick_filters(self):
        status = Alert.status
        return [
            ("Open", filtered_list_url("alerts", (status, FilterNotEqual, "RESOLVED"))),
            ("Active", filtered_list_url("alerts", (status, FilterEqual, "ACTIVE"))),
            ("Acknowledged", filtered_list_url("alerts", (status, FilterEqual, "ACKNOWLEDGED"))),
            ("Resolved", filtered_list_url("alerts", (status, FilterEqual, "RESOLVED"))),
            ("All", url_for(".index_view")),
        ]

    @action("acknowledge", "Acknowledge", "Acknowledge the selected alerts?")
    def action_acknowledge(self, ids):
        alert_ids = _parse_ids(ids)
        if len(alert_ids) > BULK_MAX:
            flash(f"Select at most {BULK_MAX} alerts at a time; {len(alert_ids)} were selected.", "error")
            return None
        changed, skipped, missing = change_alerts(alert_ids, acknowledge_alert)
        _flash_result("Acknowledged", changed, skipped, missing, "not ACTIVE")
        return None

    @action("resolve", "Resolve", "Resolve the selected alerts?")
    def action_resolve(self, ids):
        alert_ids = _parse_ids(ids)
        if len(alert_ids) > BULK_MAX:
            flash(f"Select at most {BULK_MAX} alerts at a time; {len(alert_ids)} were selected.", "error")
            return None
        changed, skipped, missing = change_alerts(alert_ids, resolve_alert)
        _flash_result("Resolved", changed, skipped, missing, "already RESOLVED")
        return None

    @expose("/acknowledge/", methods=["POST"])
    def acknowledge_one(self):
        """Acknowledge the alert in the form's `id`, then go back to the form's `url`."""
        return self._change_one(acknowledge_alert, "acknowledged", "only ACTIVE alerts can be acknowledged")

    @expose("/resolve/", methods=["POST"])
    def resolve_one(self):
        """Resolve the alert in the form's `id`, then go back to the form's `url`."""
        return self._change_one(resolve_alert, "resolved", "only open alerts can be resolved")

    def _change_one(self, change, done, reason):
        alert_ids = _parse_ids([request.form.get("id")])
        back = get_redirect_target() or url_for(".index_view")
        if not alert_ids:
            flash("The form has no valid alert id.", "error")
            return redirect(back)
        alert_id = alert_ids.pop()
        changed, skipped, missing = change_alerts({alert_id}, change)
        if changed:
            flash(f"Alert #{alert_id} {done}.", "success")
        elif skipped:
            status = db.session.scalar(db.select(Alert.status).where(Alert.id == alert_id))
            flash(f"Alert #{alert_id} was not {done}: it is {status}, and {reason}.", "warning")
        else:
            flash(f"Alert #{alert_id} not found.", "error")
        return redirect(back)
