"""The outbound HTTP client: URL parsing, the address guard, and POSTs to a
real HTTP(S) server on loopback.

No test sends a request to a non-loopback address. Guard cases for other
addresses call classify_address directly, or resolve a name through a fake
resolver and are rejected before any connection.
"""

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections import Counter
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app import http_client
from app.http_client import (
    AddressNotAllowed,
    InvalidSetting,
    InvalidURL,
    RequestFailed,
    check_url,
    classify_address,
    parse_networks,
    parse_retry_after,
    parse_url,
    post_json,
)

LOOPBACK = parse_networks("127.0.0.0/8")
# The longest a handler waits before it responds, when a test sets a delay.
# The client times out well before, and stopping the server ends the wait.
MAX_HANDLER_DELAY_SECONDS = 5.0


class RecordingHandler(BaseHTTPRequestHandler):
    """Records each POST on the server's Receiver and sends the response the Receiver is set to."""

    def do_POST(self):
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        with receiver.lock:
            receiver.requests.append({"path": self.path, "headers": self.headers, "body": body})
            status, headers, response_body, delay = receiver.status, dict(receiver.headers), receiver.body, receiver.delay
        if delay:
            receiver.release.wait(min(delay, MAX_HANDLER_DELAY_SECONDS))
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response_body)))
            self.end_headers()
            self.wfile.write(response_body)
        except (BrokenPipeError, ConnectionResetError):
            # The client timed out and closed the connection first.
            pass

    def log_message(self, format, *args):
        pass


class Receiver:
    """A ThreadingHTTPServer on a loopback address that records requests and sends a set response.

    Set `status`, `headers`, `body` and `delay` (seconds) before a request.
    """

    def __init__(self, host="127.0.0.1", ssl_context=None):
        self.requests = []
        self.server_names = []
        self.status = 200
        self.headers = {}
        self.body = b"ok"
        self.delay = 0
        self.lock = threading.Lock()
        self.release = threading.Event()

        server_class = ThreadingHTTPServer
        if ":" in host:
            server_class = type("IPv6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        self.server = server_class((host, 0), RecordingHandler)
        self.server.receiver = self
        if ssl_context is not None:
            ssl_context.sni_callback = lambda connection, name, context: self.server_names.append(name)
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path="/", host=None, scheme="http"):
        host = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"{scheme}://{host}:{self.port}{path}"

    def respond_with(self, status, headers=None, body=b""):
        self.status, self.headers, self.body = status, headers or {}, body

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


class FakeResolver:
    """Replaces socket.getaddrinfo for test names, and passes other names to the real resolver.

    `answers[name]` is a list with one list of addresses per lookup. A lookup
    beyond the last one fails, so a test notices a second resolution.
    """

    def __init__(self, real):
        self.real = real
        self.answers = {}
        self.lookups = Counter()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.lookups[host] += 1
        if self.lookups[host] > len(self.answers[host]):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        results = []
        for address in self.answers[host][self.lookups[host] - 1]:
            if ":" in address:
                results.append((socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0)))
            else:
                results.append((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port)))
        return results


@pytest.fixture
def fake_dns(monkeypatch):
    resolver = FakeResolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


def closed_port():
    """Return a loopback port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The classification of addresses: no requests.


@pytest.mark.parametrize(
    "address, reason",
    [
        ("10.0.0.1", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.1.1", "a private address"),
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("169.254.10.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fd12:3456::1", "a private address"),
        ("100.64.0.1", "a carrier-grade NAT address"),
        ("100.127.255.254", "a carrier-grade NAT address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("192.0.2.1", "a private address"),
    ],
)
def test_classify_rejects_non_public(address, reason):
    assert classify_address(address) == reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_classify_allows_public(address):
    assert classify_address(address) is None


@pytest.mark.parametrize(
    "address, reason",
    [
        ("::ffff:127.0.0.1", "a loopback address"),
        ("::ffff:10.1.2.3", "a private address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("64:ff9b::a00:1", "a private address"),
        ("64:ff9b::7f00:1", "a loopback address"),
        ("2002:a00:1::1", "a private address"),
    ],
)
def test_classify_ipv6_carrying_ipv4(address, reason):
    assert classify_address(address) == reason


def test_classify_allowed_network():
    networks = parse_networks("10.0.0.0/8, 127.0.0.0/8,fd12:3456::/48")
    assert classify_address("10.20.30.40", networks) is None
    assert classify_address("127.0.0.1", networks) is None
    assert classify_address("::ffff:127.0.0.1", networks) is None
    assert classify_address("fd12:3456::9", networks) is None
    assert classify_address("192.168.1.1", networks) == "a private address"
    assert classify_address("::1", networks) == "a loopback address"


def test_classify_metadata_needs_single_entry():
    wide = parse_networks("169.254.0.0/16,100.64.0.0/10,fc00::/7")
    assert classify_address("169.254.169.254", wide) == "a cloud metadata address"
    assert classify_address("100.100.100.200", wide) == "a cloud metadata address"
    assert classify_address("fd00:ec2::254", wide) == "a cloud metadata address"
    assert classify_address("169.254.1.1", wide) is None

    single = parse_networks("169.254.169.254/32,fd00:ec2::254")
    assert classify_address("169.254.169.254", single) is None
    assert classify_address("fd00:ec2::254", single) is None


def test_parse_networks_skips_blanks():
    assert parse_networks("") == []
    assert parse_networks(" , ") == []
    assert parse_networks(["10.0.0.0/8"]) == [ipaddress.ip_network("10.0.0.0/8")]
    assert parse_networks(" 10.1.2.3/8 ,::1 ") == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


def test_parse_networks_rejects_invalid():
    with pytest.raises(InvalidSetting) as error:
        parse_networks("10.0.0.0/8,intranet")
    assert "'intranet'" in str(error.value)
    assert "WEBHOOK_ALLOWED_NETWORKS" in str(error.value)


def test_configured_networks_reads_app_config(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8")
    assert http_client.configured_networks() == [ipaddress.ip_network("10.0.0.0/8")]


# URL parsing


@pytest.mark.parametrize(
    "url, message",
    [
        ("ftp://example.com/hook", "scheme 'ftp' is not supported"),
        ("file:///etc/passwd", "scheme 'file' is not supported"),
        ("hooks.example.com/path", "scheme '' is not supported"),
        ("http:///path", "has no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com/a b", "spaces or control characters"),
        ("http://example.com/\r\nX-Injected: 1", "spaces or control characters"),
        ("", "URL is missing"),
    ],
)
def test_parse_url_rejects(url, message):
    with pytest.raises(InvalidURL) as error:
        parse_url(url)
    assert message in str(error.value)


def test_parse_url_parts():
    target = parse_url("HTTPS://Hooks.Example.com/a/b?x=1&y=2#fragment")
    assert target.scheme == "https"
    assert target.host == "hooks.example.com"
    assert target.port == 443
    assert target.request_target == "/a/b?x=1&y=2"
    assert target.basic_auth is None


def test_parse_url_encodes_non_ascii():
    target = parse_url("http://bücher.example/ä?q=ö%20")
    assert target.host == "xn--bcher-kva.example"
    assert target.request_target == "/%C3%A4?q=%C3%B6%20"


def test_parse_url_ipv6_literal():
    target = parse_url("http://[::1]:8080")
    assert target.host == "::1"
    assert target.port == 8080
    assert target.request_target == "/"


# check_url, for forms that save a URL


def test_check_url_rejects_loopback():
    with pytest.raises(AddressNotAllowed) as error:
        check_url("http://127.0.0.1:8080/hook", allowed_networks=[])
    message = str(error.value)
    assert "resolves to 127.0.0.1, a loopback address" in message
    assert "WEBHOOK_ALLOWED_NETWORKS" in message
    assert "BACKWATCH_WEBHOOK_ALLOWED_NETWORKS" in message
    assert error.value.address == "127.0.0.1"


def test_check_url_metadata_message():
    with pytest.raises(AddressNotAllowed) as error:
        check_url("http://169.254.169.254/latest/meta-data/", allowed_networks=parse_networks("169.254.0.0/16"))
    assert "a cloud metadata address" in str(error.value)
    assert "169.254.169.254/32" in str(error.value)


def test_check_url_uses_setting(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")
    assert check_url("http://127.0.0.1:8080/hook") == ["127.0.0.1"]
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "")
    with pytest.raises(AddressNotAllowed):
        check_url("http://127.0.0.1:8080/hook")


def test_check_url_any_address_rejected(fake_dns):
    fake_dns.answers["mixed.test"] = [["127.0.0.1", "10.0.0.7"]]
    with pytest.raises(AddressNotAllowed) as error:
        check_url("http://mixed.test/hook", allowed_networks=LOOPBACK)
    assert "mixed.test resolves to 10.0.0.7, a private address" in str(error.value)


def test_check_url_unresolvable(fake_dns):
    fake_dns.answers["missing.test"] = []
    with pytest.raises(RequestFailed) as error:
        check_url("http://missing.test/hook", allowed_networks=[])
    assert "could not resolve host missing.test" in str(error.value)


def test_check_url_invalid_setting(app, ctx, monkeypatch):
    monkeypatch.setitem(app.config, "WEBHOOK_ALLOWED_NETWORKS", "not-a-network")
    with pytest.raises(InvalidSetting):
        check_url("http://127.0.0.1:8080/hook")


# post_json against a real server on loopback


def test_post_returns_response(receiver):
    receiver.respond_with(201, {"X-Receiver": "yes"}, b"created")
    response = post_json(receiver.url("/hooks/a?x=1"), b'{"a": 1}', {"X-Extra": "1"}, allowed_networks=LOOPBACK)

    assert response.status == 201
    assert response.headers["x-receiver"] == "yes"
    assert response.body == "created"
    [request] = receiver.requests
    assert request["path"] == "/hooks/a?x=1"
    assert request["body"] == b'{"a": 1}'
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == "Backwatch"
    assert request["headers"]["X-Extra"] == "1"
    assert request["headers"]["Host"] == f"127.0.0.1:{receiver.port}"


def test_post_rejected_without_allowance(receiver):
    for url in (receiver.url(), receiver.url(host="localhost")):
        with pytest.raises(AddressNotAllowed) as error:
            post_json(url, b"{}", allowed_networks=[])
        assert "a loopback address" in str(error.value)
        assert "WEBHOOK_ALLOWED_NETWORKS" in str(error.value)
    assert receiver.requests == []


def test_post_rejects_mixed_answer_unsent(receiver, fake_dns):
    # The loopback address comes first: even a broken guard would only reach the test server.
    fake_dns.answers["mixed.test"] = [["127.0.0.1", "192.168.7.7"]]
    with pytest.raises(AddressNotAllowed) as error:
        post_json(receiver.url(host="mixed.test"), b"{}", allowed_networks=LOOPBACK)
    assert error.value.address == "192.168.7.7"
    assert receiver.requests == []


def test_post_connects_to_checked_address(receiver, fake_dns):
    # A second lookup of the name would fail, so the request succeeds only
    # if the client connects to the address it checked.
    fake_dns.answers["receiver.test"] = [["127.0.0.1"]]
    response = post_json(receiver.url("/hook", host="receiver.test"), b"{}", allowed_networks=LOOPBACK)

    assert response.status == 200
    assert fake_dns.lookups["receiver.test"] == 1
    [request] = receiver.requests
    assert request["headers"]["Host"] == f"receiver.test:{receiver.port}"


def test_post_does_not_follow_redirect(receiver):
    receiver.respond_with(302, {"Location": receiver.url("/elsewhere")}, b"moved")
    response = post_json(receiver.url("/hook"), b"{}", allowed_networks=LOOPBACK)

    assert response.status == 302
    assert response.headers["Location"] == receiver.url("/elsewhere")
    assert [request["path"] for request in receiver.requests] == ["/hook"]


def test_post_times_out(receiver):
    receiver.delay = MAX_HANDLER_DELAY_SECONDS
    started = time.monotonic()
    with pytest.raises(RequestFailed) as error:
        post_json(receiver.url(), b"{}", timeout=0.5, allowed_networks=LOOPBACK)
    elapsed = time.monotonic() - started

    assert error.value.timed_out is True
    assert "did not respond within 0.5 s" in str(error.value)
    assert elapsed < 3


def test_post_connection_refused():
    with pytest.raises(RequestFailed) as error:
        post_json(f"http://127.0.0.1:{closed_port()}/", b"{}", timeout=2, allowed_networks=LOOPBACK)
    assert error.value.timed_out is False
    assert "could not connect to 127.0.0.1" in str(error.value)


def test_post_tries_next_address(receiver, fake_dns):
    fake_dns.answers["two.test"] = [["127.0.0.2", "127.0.0.1"]]
    # Nothing listens on 127.0.0.2 at the receiver's port, so the first attempt is refused.
    response = post_json(receiver.url(host="two.test"), b"{}", timeout=2, allowed_networks=LOOPBACK)
    assert response.status == 200
    assert len(receiver.requests) == 1


def test_post_truncates_response_body(receiver):
    receiver.respond_with(200, body=b"x" * 10_000)
    response = post_json(receiver.url(), b"{}", allowed_networks=LOOPBACK)
    assert len(response.body) == http_client.MAX_RESPONSE_BYTES


def test_post_sends_basic_auth_from_url(receiver):
    post_json(receiver.url(host="user%40example:p%3Ass@127.0.0.1"), b"{}", allowed_networks=LOOPBACK)
    [request] = receiver.requests
    assert request["headers"]["Authorization"] == "Basic dXNlckBleGFtcGxlOnA6c3M="


def test_post_ipv6_loopback():
    try:
        server = Receiver(host="::1").start()
    except OSError:
        pytest.skip("IPv6 loopback is not available")
    try:
        response = post_json(server.url(), b"{}", allowed_networks=parse_networks("::1/128"))
        assert response.status == 200
        assert server.requests[0]["headers"]["Host"] == f"[::1]:{server.port}"
    finally:
        server.stop()


# HTTPS: the certificate must match the URL's host name, not the address.


def _certificate(subject_key, issuer_key, subject, issuer, dns_names=None, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in dns_names]), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def tls_receiver(tmp_path):
    """An HTTPS Receiver whose certificate, from a test CA, is for receiver.test; yields (receiver, CA file)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(ca_key, ca_key, "Backwatch test CA", "Backwatch test CA", ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate(server_key, ca_key, "receiver.test", "Backwatch test CA", dns_names=["receiver.test"])

    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file = tmp_path / "server.pem"
    cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    server = Receiver(ssl_context=context).start()
    yield server, str(ca_file)
    server.stop()


def test_https_verifies_url_host(tls_receiver, fake_dns):
    server, ca_file = tls_receiver
    fake_dns.answers["receiver.test"] = [["127.0.0.1"]]
    url = server.url("/hook", host="receiver.test", scheme="https")
    response = post_json(url, b"{}", allowed_networks=LOOPBACK, ca_certs=ca_file)

    assert response.status == 200
    assert server.server_names == ["receiver.test"]
    assert server.requests[0]["headers"]["Host"] == f"receiver.test:{server.port}"


def test_https_rejects_wrong_host(tls_receiver, fake_dns):
    server, ca_file = tls_receiver
    fake_dns.answers["other.test"] = [["127.0.0.1"]]
    url = server.url("/hook", host="other.test", scheme="https")
    with pytest.raises(RequestFailed) as error:
        post_json(url, b"{}", timeout=2, allowed_networks=LOOPBACK, ca_certs=ca_file)

    assert "TLS connection to other.test failed" in str(error.value)
    assert error.value.timed_out is False
    assert server.requests == []


def test_https_rejects_unknown_ca(tls_receiver, fake_dns):
    server, _ = tls_receiver
    fake_dns.answers["receiver.test"] = [["127.0.0.1"]]
    with pytest.raises(RequestFailed):
        post_json(server.url(host="receiver.test", scheme="https"), b"{}", timeout=2, allowed_networks=LOOPBACK)
    assert server.requests == []


# Retry-After


NOW = datetime.datetime(2026, 3, 14, 2, 15, 7, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("120", 120),
        (" 0 ", 0),
        ("86400", 3600),
        (format_datetime(NOW + datetime.timedelta(seconds=90), usegmt=True), 90),
        (format_datetime(NOW + datetime.timedelta(days=2), usegmt=True), 3600),
        (format_datetime(NOW - datetime.timedelta(seconds=30), usegmt=True), 0),
        ("Sat, 14 Mar 2026 02:16:37 GMT", 90),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1.5", None),
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds
