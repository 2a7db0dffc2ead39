"""Console views. Flask-Admin escapes every value it renders; the formatters
below build markup only with markupsafe, so report text stays text."""

from datetime import datetime

from flask import abort, redirect, request, url_for
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView, filters
from flask_admin.model import filters as model_filters
from flask_admin.model import typefmt
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup

from app.admin.dashboard import render_dashboard
from app.admin.formatting import time_stamp


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def is_platform_admin():
    return current_user.is_authenticated and current_user.is_platform_admin


class LoginRequiredMixin:
    """Send anonymous visitors to the login page, and logged-in users without access to a 403."""

    def is_accessible(self):
        return current_user.is_authenticated

    def inaccessible_callback(self, name, **kwargs):
        if current_user.is_authenticated:
            abort(403, description="Only platform admins may open this page.")
        # full_path ends in "?" when there is no query string.
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


class AdminOnlyMixin(LoginRequiredMixin):
    """Make a whole view platform-admin only: pages, forms and menu entry.

    Put it first in the bases, as in `class UserView(AdminOnlyMixin,
    SecureModelView)`. For a view that every user may read but only admins
    may change, use SecureModelView (or AdminWritesMixin) alone.
    """

    def is_accessible(self):
        return is_platform_admin()


class AdminWritesMixin(LoginRequiredMixin):
    """Let every logged-in user read a view and only platform admins post to it.

    A request with any method other than GET, HEAD or OPTIONS to an
    @expose'd method of the view gets a 403 for other users, unless the
    method's name is in `user_actions`. SecureModelView adds the same rule
    for Flask-Admin's create, edit, delete and @action. Templates can hide
    a button with `admin_view.user_may(name)`.
    """

    # Names of methods, @actions and Flask-Admin operations ("create",
    # "edit", "delete") that users who are not platform admins may use.
    user_actions = ()

    def user_may(self, name):
        """Return whether the current user may use the method, @action or operation `name`."""
        return is_platform_admin() or name in self.user_actions

    def _handle_view(self, name, **kwargs):
        response = super()._handle_view(name, **kwargs)
        if response is not None or request.method in SAFE_METHODS:
            return response
        if not self._may_post(name):
            abort(403, description="Only platform admins may make this change.")
        return None

    def _may_post(self, name):
        return self.user_may(name)


def _admin_gated(operation, enabled):
    """Return a can_<operation> property: `enabled` for admins, and for others only when user_actions allows it."""
    return property(lambda view: enabled and view.user_may(operation))


# Flask-Admin's own form posts: each checks can_create, can_edit, can_delete
# or is_action_allowed itself, so a refused post redirects without a change.
FLASK_ADMIN_FORM_VIEWS = ("create_view", "edit_view", "delete_view", "action_view")


class ConsoleForm(FlaskForm):
    """A Flask-WTF form (CSRF) that keeps the edited row in `_obj`, as Flask-Admin's own BaseForm does.

    Flask-Admin's Unique validator compares against `_obj`; without it, saving
    a row with an unchanged unique value (a user's email) fails with "Already exists."
    """

    def __init__(self, *args, **kwargs):
        self._obj = kwargs.get("obj", args[1] if len(args) > 1 else None)
        super().__init__(*args, **kwargs)


class ConsoleIndexView(LoginRequiredMixin, AdminIndexView):
    @expose("/")
    def index(self):
        if not self.is_accessible():
            return self.inaccessible_callback("index")
        return render_dashboard(self)


class ColumnTypeFilterConverter(filters.FilterConverter):
    """Filters for the project's own column types, by the types they wrap."""

    @model_filters.convert("UTCDateTime")
    def conv_utc_datetime(self, column, name, **kwargs):
        return self.conv_datetime(column, name, **kwargs)


# A larger page number is read as this one, because its offset could overflow the database's integers.
MAX_PAGE = 100_000


class SecureModelView(AdminWritesMixin, ModelView):
    """A model view that every logged-in user may read and only platform admins may change.

    For users who are not platform admins, can_create, can_edit and
    can_delete are False (Flask-Admin hides the buttons and refuses the
    posts), every @action is disallowed, and every other POST route of the
    view returns 403 (see AdminWritesMixin). A subclass keeps Flask-Admin's
    idiom: `can_create = True` there means "platform admins may create",
    because __init_subclass__ turns such a class attribute into a property
    with the same check. To open an operation to every logged-in user, list
    it in `user_actions`, for example `user_actions = ("acknowledge",)` for
    an @action or POST route named acknowledge, or "create", "edit",
    "delete" for the forms. A view that other users may not even read adds
    AdminOnlyMixin.
    """

    # Flask-WTF forms, so the app-wide CSRF protection covers every form and action.
    form_base_class = ConsoleForm
    # Times in the user's time zone, to the minute, in lists and on detail pages.
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: lambda view, value, name: time_stamp(value)}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, datetime: lambda view, value, name: time_stamp(value)}
    filter_converter = ColumnTypeFilterConverter()
    page_size = 50
    can_set_page_size = True
    can_create = _admin_gated("create", True)
    can_edit = _admin_gated("edit", True)
    can_delete = _admin_gated("delete", True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for operation in ("create", "edit", "delete"):
            name = f"can_{operation}"
            value = cls.__dict__.get(name)
            if isinstance(value, bool):
                setattr(cls, name, _admin_gated(operation, value))

    def is_action_allowed(self, name):
        return self.user_may(name) and super().is_action_allowed(name)

    def get_list(self, page, *args, **kwargs):
        # A page number past MAX_PAGE would make an OFFSET the database cannot hold.
        return super().get_list(min(max(page or 0, 0), MAX_PAGE), *args, **kwargs)

    def _may_post(self, name):
        if name in FLASK_ADMIN_FORM_VIEWS:
            return True
        if name == "ajax_update":
            # Flask-Admin checks only column_editable_list for inline edits, not can_edit.
            return self.can_edit
        return super()._may_post(name)


def column_severity(view, context, model, name):
    severity = getattr(model, name)
    return Markup('<span class="severity-{0}">{0}</span>').format(severity.name) if severity else ""

