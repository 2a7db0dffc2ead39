"""The one module that sends HTTP requests to other hosts.

Every outbound request goes through `post_json`. Before it connects, it
resolves the host once and rejects the URL when any resolved address is not
public (private, loopback, link-local, multicast, reserved, unspecified,
carrier-grade NAT or a cloud metadata service), unless the setting
WEBHOOK_ALLOWED_NETWORKS contains the address. It then connects to the
checked address itself, so a second DNS answer cannot point the request
elsewhere (DNS rebinding). Redirects are returned, never followed.

NOTE: because the connection goes straight to the checked address, the
HTTP_PROXY and HTTPS_PROXY environment variables are not used.
"""

import email.utils
import ipaddress
import logging
import math
import re
import socket
import time
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import quote, unquote, urlsplit

import urllib3
from flask import current_app, has_app_context
from urllib3.exceptions import HTTPError, NewConnectionError, SSLError
from urllib3.exceptions import TimeoutError as Urllib3TimeoutError

from app.config import Config

log = logging.getLogger(__name__)

ALLOWED_NETWORKS_SETTING = "WEBHOOK_ALLOWED_NETWORKS"
ALLOWED_NETWORKS_ENVIRONMENT = "BACKWATCH_WEBHOOK_ALLOWED_NETWORKS"
DEFAULT_TIMEOUT_SECONDS = 10.0
# How much of a response body is read and returned. Receivers return a short
# status text, and an error message needs no more than this.
MAX_RESPONSE_BYTES = 4096
MAX_RETRY_AFTER_SECONDS = 3600
USER_AGENT = "Backwatch"
DEFAULT_PORTS = {"http": 80, "https": 443}

# Instance metadata services of AWS (IPv4 and IPv6), GCP, Azure and Alibaba
# Cloud. A network in WEBHOOK_ALLOWED_NETWORKS that merely contains one of
# them does not allow it: only an entry for the single address does, so that
# allowing 169.254.0.0/16 or fc00::/7 for internal receivers cannot expose
# the credentials these services hand out.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address) for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
CARRIER_GRADE_NAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class InvalidURL(ValueError):
    """A URL that cannot be sent to: wrong scheme, no host, invalid port or characters."""


class InvalidSetting(ValueError):
    """WEBHOOK_ALLOWED_NETWORKS contains an entry that is not a network."""


class AddressNotAllowed(ValueError):
    """The host resolves to an address that the address guard rejects."""

    def __init__(self, message, *, host, address, reason):
        super().__init__(message)
        self.host = host
        self.address = address
        self.reason = reason


class RequestFailed(Exception):
    """The request did not produce a response: DNS, connection, TLS or timeout failure."""

    def __init__(self, message, *, timed_out=False):
        super().__init__(message)
        self.timed_out = timed_out


class Response(NamedTuple):
    """The outcome of one request: status, headers (case-insensitive) and the start of the body."""

    status: int
    headers: urllib3.HTTPHeaderDict
    body: str


class Target(NamedTuple):
    """A parsed URL: the parts `post_json` needs to connect and to send the request line."""

    scheme: str
    host: str
    port: int
    request_target: str
    basic_auth: str | None


# URL parsing and the address guard


def parse_url(url):
    """Split `url` into a Target, or raise InvalidURL saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidURL("URL is missing")
    if re.search(r"[\x00-\x20\x7f]", url):
        raise InvalidURL("URL contains spaces or control characters; percent-encode them")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidURL(f"URL scheme {parts.scheme!r} is not supported; use http or https")
    if not parts.hostname:
        raise InvalidURL(f"URL {url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise InvalidURL(f"URL {url!r} has an invalid port; expected 1 to 65535")
    if port is None:
        port = DEFAULT_PORTS[scheme]

    host = _ascii_host(parts.hostname)
    request_target = parts.path or "/"
    if parts.query:
        request_target += "?" + parts.query
    # The request line must be ASCII. Characters that are already valid,
    # percent escapes included, stay as they are.
    request_target = quote(request_target, safe="!#$%&'()*+,/:;=?@[]~")
    basic_auth = None
    if parts.username is not None:
        basic_auth = unquote(parts.username) + ":" + unquote(parts.password or "")
    return Target(scheme, host, port, request_target, basic_auth)


def _ascii_host(hostname):
    """Return the host in ASCII: an IP literal unchanged, a name IDNA-encoded."""
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    try:
        return hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidURL(f"host {hostname!r} is not a valid host name") from None


def parse_networks(value, setting=ALLOWED_NETWORKS_SETTING):
    """Return the networks in `value`, a comma-separated string or a list of CIDRs.

    Raises InvalidSetting naming the entry that is not a network and the `setting` it came from.
    """
    items = value.split(",") if isinstance(value, str) else list(value or ())
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise InvalidSetting(
                f"invalid network {text!r} in {setting}: "
                "expected comma-separated CIDRs such as 10.0.0.0/8 or fd12:3456::/48"
            ) from None
    return networks


def configured_networks():
    """Return the networks of WEBHOOK_ALLOWED_NETWORKS, from the app config when an app is active."""
    if has_app_context():
        value = current_app.config.get(ALLOWED_NETWORKS_SETTING, "")
    else:
        value = Config.WEBHOOK_ALLOWED_NETWORKS
    return parse_networks(value)


def classify_address(address, allowed_networks=()):
    """Return why the guard rejects `address` ("a loopback address"), or None if it is allowed.

    `address` is a string or an ipaddress object; `allowed_networks` is a
    list of ipaddress networks, as parse_networks returns.
    """
    ip = _plain_address(address)
    candidates = _addresses_to_check(ip)

    for candidate in candidates:
        if candidate in METADATA_ADDRESSES:
            single_entries = [network for network in allowed_networks if network.num_addresses == 1]
            if any(candidate in network for network in single_entries):
                return None
            return "a cloud metadata address"

    if any(candidate in network for candidate in [ip, *candidates] for network in allowed_networks):
        return None
    for candidate in candidates:
        reason = _non_public_reason(candidate)
        if reason is not None:
            return reason
    return None


def _plain_address(address):
    """Return `address` as an ipaddress object without an IPv6 zone ("%eth0")."""
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        address = str(address)
    return ipaddress.ip_address(str(address).split("%", 1)[0])


def _addresses_to_check(ip):
    """Return the addresses that decide which host a connection to `ip` reaches."""
    if ip.version == 6:
        # These IPv6 forms carry an IPv4 address and reach that IPv4 host.
        if ip.ipv4_mapped is not None:
            return [ip.ipv4_mapped]
        if ip in NAT64:
            return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
        if ip.sixtofour is not None:
            return [ip.sixtofour, ip]
    return [ip]


def _non_public_reason(ip):
    # The order picks the most specific name: 127.0.0.1 is both loopback
    # and private, and 255.255.255.255 both reserved and private.
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip in CARRIER_GRADE_NAT:
        return "a carrier-grade NAT address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def resolve(host, port):
    """Return the distinct addresses of `host` in resolver order, or raise RequestFailed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestFailed(f"could not resolve host {host}: {exc}") from None
    addresses = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        if sockaddr[0] not in addresses:
            addresses.append(sockaddr[0])
    if not addresses:
        raise RequestFailed(f"could not resolve host {host}: no addresses")
    return addresses


def check_target(target, allowed_networks=None):
    """Resolve the host of `target` and return its addresses if the guard allows every one.

    Raises AddressNotAllowed for the first address the guard rejects,
    RequestFailed when the name does not resolve, and InvalidSetting when
    WEBHOOK_ALLOWED_NETWORKS is invalid. `allowed_networks` None means the
    setting.
    """
    if allowed_networks is None:
        allowed_networks = configured_networks()
    addresses = resolve(target.host, target.port)
    for address in addresses:
        reason = classify_address(address, allowed_networks)
        if reason is not None:
            raise AddressNotAllowed(
                _rejection_message(target.host, address, reason), host=target.host, address=address, reason=reason
            )
    return addresses


def check_url(url, allowed_networks=None):
    """Check `url` as post_json would before sending; return the addresses it resolves to.

    Meant for forms that save a URL. Raises InvalidURL or AddressNotAllowed
    (both ValueError, with a message to show the user), InvalidSetting, or
    RequestFailed when the host does not resolve now.
    """
    return check_target(parse_url(url), allowed_networks)


def _rejection_message(host, address, reason):
    ip = _plain_address(address)
    if reason == "a cloud metadata address":
        allow = (
            f"Only an entry for this single address ({ip}/{ip.max_prefixlen}) in the setting "
            f"{ALLOWED_NETWORKS_SETTING} (environment variable {ALLOWED_NETWORKS_ENVIRONMENT}) allows it."
        )
    else:
        allow = (
            f"To allow it, add a network that contains {ip} to the setting {ALLOWED_NETWORKS_SETTING} "
            f"(environment variable {ALLOWED_NETWORKS_ENVIRONMENT}), for example {ip}/{ip.max_prefixlen}."
        )
    return f"{host} resolves to {address}, {reason}. {allow}"


# Sending


def post_json(url, body, headers=None, timeout=DEFAULT_TIMEOUT_SECONDS, allowed_networks=None, ca_certs=None):
    """POST `body` (bytes) to `url` and return a Response, whatever its status.

    Sends Content-Type: application/json unless `headers` sets it. Redirects
    are not followed. `timeout` (seconds) bounds the connection attempts and
    each wait for response data. `allowed_networks` None means the setting
    WEBHOOK_ALLOWED_NETWORKS. `ca_certs` is a CA bundle file for HTTPS, None
    for the system's trusted certificates.

    Raises InvalidURL, AddressNotAllowed, InvalidSetting, or RequestFailed
    (with `timed_out` set when the timeout expired).
    """
    target = parse_url(url)
    addresses = check_target(target, allowed_networks)
    request_headers = _request_headers(target, headers)
    deadline = time.monotonic() + timeout

    # Try the checked addresses in resolver order until one accepts the
    # connection, as a browser would when a host has IPv4 and IPv6 addresses.
    last_error = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return _post_to_address(target, address, body, request_headers, remaining, ca_certs)
        except _ConnectFailed as exc:
            last_error = exc
            log.info("POST to %s: could not connect to %s: %s", target.host, address, exc)
    if last_error is None or last_error.timed_out:
        raise RequestFailed(f"connection to {target.host} timed out after {timeout:g} s", timed_out=True)
    raise RequestFailed(f"could not connect to {target.host}: {last_error}")


class _ConnectFailed(Exception):
    """No connection to one address; post_json tries the next one."""

    def __init__(self, message, *, timed_out):
        super().__init__(message)
        self.timed_out = timed_out


def _request_headers(target, headers):
    request_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    request_headers.update(headers or {})
    # The connection goes to an IP address, so the Host header carries the name.
    host = f"[{target.host}]" if ":" in target.host else target.host
    if target.port != DEFAULT_PORTS[target.scheme]:
        host += f":{target.port}"
    request_headers["Host"] = host
    if target.basic_auth is not None:
        request_headers.update(urllib3.make_headers(basic_auth=target.basic_auth))
    return request_headers


def _connection_pool(target, address, ca_certs):
    options = {"port": target.port, "maxsize": 1, "retries": False}
    if target.scheme == "https":
        # The certificate must match the host name of the URL, not the address.
        return urllib3.HTTPSConnectionPool(
            address,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_certs,
            **options,
        )
    return urllib3.HTTPConnectionPool(address, **options)


def _post_to_address(target, address, body, headers, timeout, ca_certs):
    deadline = time.monotonic() + timeout
    pool = _connection_pool(target, address, ca_certs)
    try:
        try:
            response = pool.urlopen(
                "POST",
                target.request_target,
                body=body,
                headers=headers,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                timeout=urllib3.Timeout(total=timeout),
            )
        except NewConnectionError as exc:
            raise _ConnectFailed(str(exc.__cause__ or exc), timed_out=False) from None
        except urllib3.exceptions.ConnectTimeoutError:
            raise _ConnectFailed("timed out", timed_out=True) from None
        except Urllib3TimeoutError:
            raise RequestFailed(f"{target.host} did not respond within {timeout:.3g} s", timed_out=True) from None
        except SSLError as exc:
            raise RequestFailed(f"TLS connection to {target.host} failed: {exc.__cause__ or exc}") from None
        except (HTTPError, OSError) as exc:
            raise RequestFailed(f"request to {target.host} failed: {exc}") from None

        try:
            body_text = _read_limited(response, deadline, target.host)
        finally:
            response.close()
        return Response(response.status, response.headers, body_text)
    finally:
        pool.close()


def _read_limited(response, deadline, host):
    """Read at most MAX_RESPONSE_BYTES of the body and decode it as UTF-8."""
    # NOTE: each read waits up to the remaining time, but a server that sends
    # its headers a byte at a time can still keep the request open for longer
    # than the timeout, because http.client reads them with one socket timeout.
    chunks = []
    size = 0
    try:
        while size < MAX_RESPONSE_BYTES and time.monotonic() < deadline:
            chunk = response.read(min(1024, MAX_RESPONSE_BYTES - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (HTTPError, OSError) as exc:
        # The status line and headers arrived, so they are the outcome.
        log.info("Response body from %s was not read completely: %s", host, exc)
    return b"".join(chunks).decode("utf-8", errors="replace")


def parse_retry_after(value, now=None):
    """Return the delay in seconds that a Retry-After header value requests.

    Accepts delay-seconds ("120") and an HTTP-date, caps the result at
    MAX_RETRY_AFTER_SECONDS, and returns None for a missing or invalid value.
    A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if re.fullmatch(r"[0-9]+", text):
        seconds = int(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            # HTTP-dates are in GMT.
            when = when.replace(tzinfo=timezone.utc)
        now = now or datetime.now(timezone.utc)
        seconds = math.ceil((when - now).total_seconds())
    return min(max(seconds, 0), MAX_RETRY_AFTER_SECONDS)
