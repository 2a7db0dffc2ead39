"""The OpenAPI description: valid, in step with the routes, and true of the hooks under fuzzing.

Schemathesis generates valid and invalid requests to the hook and ping
operations from the description served at /api/v1/openapi.json, and sends
them to the app in-process (WSGI). Each response must have no 5xx status, a
documented status, content type, headers and body. A rejected request must
store no row.
"""

import re
import string

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from werkzeug.exceptions import MethodNotAllowed, NotFound

from app.extensions import db
from app.models import BackupJob, BackupRun, RunStart
from app.openapi import build_openapi
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

SPEC_PATH = "/api/v1/openapi.json"
# Operations that backup jobs call; the rest of the API needs a user.
FUZZED_PATHS = r"^/(hooks|ping)/"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Generated requests per operation and generation mode. The pings share one
# handler and take only a token, an optional rid and a log body, so fewer
# examples cover them. The JSON hooks get the most.
MAX_EXAMPLES = {"/hooks/": 150, "/ping/": 30}
# Hook tokens are secrets.token_urlsafe() strings.
URLSAFE = string.ascii_letters + string.digits + "-_"


# The document


def test_openapi_document_is_valid(client):
    response = client.get(SPEC_PATH)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.json
    assert document["openapi"].startswith("3.1")
    validate(document)


def _route_template(rule):
    """Return a Werkzeug rule as an OpenAPI path: /hooks/<token> becomes /hooks/{token}."""
    path = rule.rule
    for argument in rule.arguments:
        for converter in ("", "int:", "string:", "path:"):
            path = path.replace(f"<{converter}{argument}>", "{" + argument + "}")
    return path


def _documented_methods(app):
    with app.test_client() as client:
        document = client.get(SPEC_PATH).json
    return {(path, method.upper()) for path, item in document["paths"].items() for method in item}


def _route_matches(app, path, method):
    """Return True when a request to `path` (with sample parameter values) reaches a route."""
    sample = path.replace("{status}", "0")
    for name in ("token", "alert_id", "job_id"):
        sample = sample.replace("{" + name + "}", "1")
    adapter = app.url_map.bind("backwatch.test")
    try:
        adapter.match(sample, method=method)
    except (NotFound, MethodNotAllowed):
        return False
    return True


def test_every_route_is_documented(app):
    """Each JSON, hook, ping and probe route and method appears in the description."""
    documented = _documented_methods(app)
    missing = []
    for rule in app.url_map.iter_rules():
        template = _route_template(rule)
        if not template.startswith(("/api/", "/hooks/", "/ping/", "/healthz", "/metrics")):
            continue
        for method in sorted(rule.methods - {"OPTIONS"}):
            if method == "HEAD" and "GET" in rule.methods and (template, "HEAD") not in documented:
                # Flask adds HEAD to every GET route.
                continue
            # /ping/<token>/<action> is documented as its concrete actions and /ping/{token}/{status}.
            candidates = {template, template.replace("{action}", "{status}")}
            if not any((path, method) in documented for path in candidates):
                missing.append(f"{method} {template}")
    assert missing == []


def test_every_documented_operation_has_a_route(app):
    documented = _documented_methods(app)
    # Hook formats that other parts of the app add; until they are there, they are not required here.
    optional = {"/hooks/{token}/duplicati", "/hooks/{token}/restic"}
    unrouted = sorted(f"{method} {path}" for path, method in documented
                      if path not in optional and not _route_matches(app, path, method))
    assert unrouted == []


# Fuzzing the hooks


def _fuzzed_operations():
    """Return (method, path) of every hook and ping operation in the description."""
    return [
        (method.upper(), path)
        for path, item in build_openapi()["paths"].items()
        if re.match(FUZZED_PATHS, path)
        for method in item
    ]


@pytest.fixture(scope="module")
def hook_schema(app):
    return schemathesis.openapi.from_wsgi(SPEC_PATH, app)


@pytest.fixture
def hook_token(make_job):
    return make_job("fuzzed")[1]


def _row_counts(app):
    with app.app_context():
        counts = tuple(
            db.session.scalar(db.select(db.func.count()).select_from(model)) for model in (BackupRun, RunStart, BackupJob)
        )
        db.session.remove()
        return counts


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda mode: mode.value)
@pytest.mark.parametrize("method, path", _fuzzed_operations())
def test_hook_fuzz(app, hook_schema, hook_token, method, path, mode):
    """Send generated requests with the job's token or a random one; check each response and the rows.

    NOTE: Hypothesis drives the operation's strategy directly because
    schemathesis.pytest.from_fixture() of schemathesis 4.32.5 fails under
    pytest 9.2: it reads request.node._nodeid, which pytest 9.2 nodes do not have.
    """
    if not _route_matches(app, path, method):
        pytest.skip(f"{method} {path} is not routed in this build")
    operation = hook_schema[path][method]

    max_examples = MAX_EXAMPLES["/hooks/" if path.startswith("/hooks/") else "/ping/"]

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(
        case=operation.as_strategy(generation_mode=mode),
        # With derandomize, Hypothesis draws False for about two in three of
        # these examples, so most requests carry the job's token and reach the parsers.
        use_random_token=st.booleans(),
        random_token=st.text(alphabet=URLSAFE, min_size=1, max_size=64),
    )
    def send(case, use_random_token, random_token):
        case.path_parameters["token"] = random_token if use_random_token else hook_token
        # A "/" in a path value makes another URL, one that no operation describes.
        assume(all("/" not in str(value) for value in case.path_parameters.values()))

        before = _row_counts(app)
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        after = _row_counts(app)
        if 400 <= response.status_code < 500:
            assert after == before, f"a {response.status_code} response stored rows: {before} -> {after}"
        assert after[2] == before[2], "a hook request changed the number of jobs"

    send()
