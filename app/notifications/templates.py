"""Message templates: built-in defaults, admin-edited rows, sandboxed rendering."""

import logging
from dataclasses import dataclass

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.extensions import db
from app.models import NotificationTemplate

log = logging.getLogger(__name__)

_EMAIL_SUBJECT = (
    "[{{ alert.severity }}] {% if event != 'raised' %}{{ event | capitalize }}: {% endif %}"
    "{{ alert.message }}"
)
_EMAIL_TEXT = """\
{{ alert.severity }} {{ alert.type }} ({{ event }})

{{ alert.message }}

Job: {{ job.name if job else '-' }}
Status: {{ alert.status }}
First seen: {{ alert.created_at }}
Last seen: {{ alert.last_seen_at }}
Occurrences: {{ alert.occurrences }}
{% for key, value in alert.details | dictsort %}{{ key }}: {{ value }}
{% endfor %}
Open in the console: {{ links.alert }}
"""
_EMAIL_HTML = """\
<h2 style="margin:0">{{ alert.severity }} {{ alert.type }}</h2>
<p><strong>{{ alert.message }}</strong></p>
<table cellpadding="4">
<tr><th align="left">Event</th><td>{{ event }}</td></tr>
<tr><th align="left">Job</th><td>{% if job %}<a href="{{ job.url }}">{{ job.name }}</a>{% else %}-{% endif %}</td></tr>
<tr><th align="left">Status</th><td>{{ alert.status }}</td></tr>
<tr><th align="left">First seen</th><td>{{ alert.created_at }}</td></tr>
<tr><th align="left">Last seen</th><td>{{ alert.last_seen_at }}</td></tr>
<tr><th align="left">Occurrences</th><td>{{ alert.occurrences }}</td></tr>
{% for key, value in alert.details | dictsort %}<tr><th align="left">{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
<p><a href="{{ links.alert }}">Open the alert in Backwatch</a></p>
"""
_DIGEST_SUBJECT = "Backwatch daily digest: {{ digest.total }} open alerts"
_DIGEST_TEXT = """\
Open alerts: {{ digest.total }}
{% for name, count in digest.get("by_severity", {}).items() %}{{ name }}: {{ count }}  {% endfor %}
{% for type, count in digest.by_type | dictsort %}{{ type }}: {{ count }}
{% endfor %}
{% for group in digest.jobs %}
{{ group.job }}
{% for alert in group.alerts %}  [{{ alert.severity }}] {{ alert.message }} ({{ alert.url }})
{% endfor %}{% endfor %}{% if digest.get("omitted") %}
and {{ digest.omitted }} more in the console.
{% endif %}
Console: {{ links.console }}
"""
_DIGEST_HTML = """\
<h2>Open alerts: {{ digest.total }}</h2>
<p>{% for name, count in digest.get("by_severity", {}).items() %}{{ name }}: {{ count }}{% if not loop.last %} · {% endif %}{% endfor %}</p>
<ul>{% for type, count in digest.by_type | dictsort %}<li>{{ type }}: {{ count }}</li>{% endfor %}</ul>
{% for group in digest.jobs %}<h3>{{ group.job }}</h3><ul>
{% for alert in group.alerts %}<li>[{{ alert.severity }}] <a href="{{ alert.url }}">{{ alert.message }}</a></li>
{% endfor %}</ul>{% endfor %}
{% if digest.get("omitted") %}<p>and {{ digest.omitted }} more in the console.</p>{% endif %}
<p><a href="{{ links.console }}">Open Backwatch</a></p>
"""
_SMS_TEXT = "{{ alert.severity }} {{ job.name if job else '' }}: {{ alert.message }}"


@dataclass(frozen=True)
class BuiltinTemplate:
    channel: str
    subject: str | None
    html_body: str | None
    text_body: str


BUILTIN_TEMPLATES = {
    "backup_alert": BuiltinTemplate("email", _EMAIL_SUBJECT, _EMAIL_HTML, _EMAIL_TEXT),
    "backup_alert_digest": BuiltinTemplate("email", _DIGEST_SUBJECT, _DIGEST_HTML, _DIGEST_TEXT),
    "backup_alert_critical": BuiltinTemplate("sms", None, None, _SMS_TEXT),
}

# Templates are admin input: the sandbox blocks attribute tricks, and HTML
# parts escape every value. The text and subject parts do not escape,
# because they are not HTML.
_html_env = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
_text_env = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)


@dataclass
class Rendered:
    subject: str | None
    html: str | None
    text: str
    # Set when the stored template failed and the built-in one was used.
    error: str | None = None


def render(name, context):
    """Render template `name` with `context`, falling back to the built-in text.

    A stored template that fails to render (syntax error, unknown variable,
    a blocked operation) is replaced by the built-in one, and the error is
    returned on the result for the delivery's record.
    """
    builtin = BUILTIN_TEMPLATES[name]
    stored = db.session.execute(
        db.select(NotificationTemplate).where(NotificationTemplate.name == name)
    ).scalar_one_or_none()
    if stored is not None:
        try:
            return _render_parts(stored.subject, stored.html_body, stored.text_body, context)
        except (TemplateError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("Template %s: rendering failed, using the built-in text: %s", name, exc)
            result = _render_parts(builtin.subject, builtin.html_body, builtin.text_body, context)
            result.error = f"template {name!r} failed to render ({type(exc).__name__}: {exc}); the built-in text was sent"
            return result
    return _render_parts(builtin.subject, builtin.html_body, builtin.text_body, context)


def _render_parts(subject, html_body, text_body, context):
    return Rendered(
        subject=" ".join(_text_env.from_string(subject).render(context).split()) if subject else None,
        html=_html_env.from_string(html_body).render(context) if html_body else None,
        text=_text_env.from_string(text_body).render(context),
    )


def create_builtin_templates():
    """Create each built-in template row that is missing; refresh unedited ones.

    Returns (name, action) pairs. A template an admin edited is never changed.
    """
    actions = []
    for name, builtin in BUILTIN_TEMPLATES.items():
        row = db.session.execute(
            db.select(NotificationTemplate).where(NotificationTemplate.name == name)
        ).scalar_one_or_none()
        if row is None:
            db.session.add(NotificationTemplate(
                name=name, channel=builtin.channel, subject=builtin.subject,
                html_body=builtin.html_body, text_body=builtin.text_body, edited=False,
            ))
            actions.append((name, "created"))
        elif row.edited:
            actions.append((name, "kept (edited by an admin)"))
        else:
            row.subject, row.html_body, row.text_body = builtin.subject, builtin.html_body, builtin.text_body
            actions.append((name, "unchanged"))
    db.session.commit()
    return actions
