"""Display helpers for the console: times, durations, sizes, and links to filtered lists."""

from datetime import timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import current_app, url_for
from flask_login import current_user

from app.admin.charts import human
from app.models import utcnow
from app.units import human_seconds


def display_zone():
    """Return the logged-in user's time zone (a preference), or UTC."""
    name = getattr(current_user, "timezone", None) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def time_stamp(moment):
    """Return `moment` in the user's time zone, as "2026-12-01 03:14 CET", or "" for None."""
    if moment is None:
        return ""
    return moment.astimezone(display_zone()).strftime("%Y-%m-%d %H:%M %Z")


def relative_time(moment, now=None):
    """Return how far `moment` is from now, such as "3 h ago" or "in 5 min"."""
    if moment is None:
        return ""
    now = now or utcnow()
    seconds = (now - moment).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 60:
        return "just now" if not future else "in under a minute"
    if seconds < 3600:
        amount = f"{seconds // 60:.0f} min"
    elif seconds < 10 * 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        amount = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    elif seconds < 48 * 3600:
        amount = f"{round(seconds / 3600)} h"
    else:
        amount = f"{round(seconds / 86400)} d"
    return f"in {amount}" if future else f"{amount} ago"


def human_duration(seconds):
    """Return a duration in seconds as "45 s", "14 min 9 s" or "2 h 5 min"."""
    return "" if seconds is None else human_seconds(seconds)


def human_size(size_bytes):
    """Return a byte count in binary units, such as "5.0 GiB", or "" for None."""
    return "" if size_bytes is None else human(size_bytes, "B")


def _column_identity(column):
    # A filter refers to a mapped attribute or to a table column, and both lead to the column.
    column = getattr(column, "expression", column)
    return column.table.name, column.key


def filtered_list_url(endpoint, *conditions, **url_args):
    """Return the URL of a Flask-Admin list view with its own filters applied.

    Each condition is (column, filter class, value), for example
    (Alert.severity, FilterEqual, 40). The first filter of the view on that
    column that is an instance of the class is used. Its position in the
    view decides its URL argument, so the argument is looked up rather than
    written out. A condition the view has no filter for raises LookupError.
    """
    view = next(
        view for admin in current_app.extensions["admin"] for view in admin._views
        if getattr(view, "endpoint", None) == endpoint
    )
    for position, (column, filter_class, value) in enumerate(conditions):
        expected = _column_identity(column)
        for index, flt in enumerate(view._filters or ()):
            if isinstance(flt, filter_class) and _column_identity(flt.column) == expected:
                url_args[f"flt{position}_{view.get_filter_arg(index, flt)}"] = value
                break
        else:
            raise LookupError(f"{endpoint} has no {filter_class.__name__} filter on {expected[0]}.{expected[1]}")
    return url_for(f"{endpoint}.index_view", **url_args)
