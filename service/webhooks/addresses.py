"""Which URLs webhooks may be delivered to: http or https, to a public address unless the
operator allows private ones (a tenant admin must not reach the service's own network).

Checked when an endpoint is added, and on every delivery against the addresses the name
resolves to then (a name can be pointed elsewhere after it was added).

A URL is refused, whatever the setting, when programs could read it differently: characters
outside RFC 3986 (a backslash is a slash to browsers, not to Python), credentials
(`user:pass@`: never sent as a login, the signature proves the sender, and `webhooks list` and
the admin page would show it), a fragment (never sent), a zone index, and an IPv4 address
spelled other than as four decimal numbers (`http://2130706433/`, `http://0177.0.0.1/`,
`http://127.1/`: the C resolver reads them as 127.0.0.1, other parsers as something else or as
a name). A host that does not resolve is refused when added: the operator who mistyped it is
there to fix it (a delivery to a host that stops resolving later is a failed attempt, retried).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import SplitResult, urlsplit

from service.limits import MAX_URL

SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}
"""The port each scheme connects to when its URL names none."""
_ESCAPE = re.compile("%[0-9a-fA-F]{2}")
ALLOW_PRIVATE_HINT = "refused unless WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE=true"
MAX_HOST = 253
"""The longest DNS name."""
_URL_CHARACTER = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
"""What RFC 3986 lets a URL hold; anything else (spaces, `\\`, non-ASCII) must be %-encoded."""
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
"""One label of a host name (lower case: urlsplit lowers the host)."""
_NUMERIC = re.compile(r"0x[0-9a-f]*|[0-9]+")
"""A last label that makes a URL's host an IPv4 address to browsers (the WHATWG URL rules)."""
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def host(url: str) -> str:
    """The URL's host name (for an endpoint's default name)."""
    try:
        return urlsplit(url).hostname or url
    except ValueError:
        return url


def problem(url: str, *, allow_private: bool) -> str | None:
    """Why the service may not deliver to this URL, in words; None when it may. Resolves the
    host (form_problem first: a URL of a refused form is never resolved)."""
    parts, shape = _parsed(url)
    if shape is not None or parts is None:
        return shape
    hostname = parts.hostname or ""
    try:
        found = resolve(hostname, parts.port or DEFAULT_PORTS[parts.scheme])
    except (OSError, UnicodeError) as error:
        reason = getattr(error, "strerror", None) or error
        return f"has a host {hostname!r} that does not resolve ({reason}): check its spelling"
    return None if allow_private else private_problem(hostname, found)


def canonical(url: str) -> str:
    """One spelling of a URL whose form passed `form_problem`, so that two spellings of one
    receiver are one endpoint: scheme and host in lower case, an IPv6 address in its compressed
    form, no default port (80 for http, 443 for https), `/` for an empty path, percent-escapes
    in upper case (RFC 3986, 6.2.2.1). The path and query are otherwise kept as written: a
    receiver may tell their case, their dot segments and their escapes apart."""
    return _spelled(urlsplit(url))


def _spelled(parts: SplitResult) -> str:
    """`canonical` of a URL already split."""
    hostname = parts.hostname or ""
    netloc = f"[{ipaddress.IPv6Address(hostname).compressed}]" if ":" in hostname else hostname
    if parts.port is not None and parts.port != DEFAULT_PORTS[parts.scheme]:
        netloc += f":{parts.port}"
    query = f"?{parts.query}" if parts.query else ""
    return _ESCAPE.sub(
        lambda m: m.group().upper(), f"{parts.scheme}://{netloc}{parts.path or '/'}{query}"
    )


def form_problem(url: str) -> str | None:
    """Why the URL's form is refused whatever WEBHOOK_ALLOW_PRIVATE says (no resolving: pure)."""
    return _parsed(url)[1]


def private_problem(hostname: str, found: Iterable[str]) -> str | None:
    """Why a host that resolves to `found` may not be delivered to: the first address of it
    that is not public (a name with one private address among public ones is refused too)."""
    private = [address for address in found if not is_public(address)]
    if not private:
        return None
    literal = _same_address(hostname, private[0])
    where = hostname if literal else f"{hostname!r}, which resolves to {private[0]},"
    return f"is not on the public internet: {where} is {_kind(private[0])}; {ALLOW_PRIVATE_HINT}"


def resolve(hostname: str, port: int) -> list[str]:
    """Every address the name resolves to now."""
    return sorted(
        {str(info[4][0]) for info in socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)}
    )


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, link-local, private, shared
    (CGNAT), reserved, multicast or unspecified. An IPv6 address that carries an IPv4 one
    (mapped, NAT64, 6to4) is judged as that IPv4 address; the deprecated IPv4-compatible and
    site-local IPv6 ranges, which Python 3.11 counts as global, are not public."""
    ip = _judged(ipaddress.ip_address(address.split("%")[0]))
    if ip is None:
        return False
    return ip.is_global and not ip.is_multicast


def _judged(ip: IP) -> IP | None:
    """The address whose kind decides: an IPv6 address's embedded IPv4 one; None for the IPv6
    ranges that are never public."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _IPV4_COMPATIBLE or ip in _NAT64_LOCAL or ip.is_site_local:
        return None
    return ip


def _kind(address: str) -> str:
    """What kind of non-public address this is, in words."""
    given = ipaddress.ip_address(address.split("%")[0])
    ip = _judged(given) or given
    kinds = [
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip in _SHARED, "a shared (CGNAT) address"),
        (ip.is_private, "a private address"),
    ]
    return next((words for true, words in kinds if true), "a reserved address")


def _same_address(hostname: str, address: str) -> bool:
    """Whether the host is this address written as a literal (not a name resolving to it)."""
    try:
        return ipaddress.ip_address(hostname) == ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False


def _parsed(url: str) -> tuple[SplitResult | None, str | None]:
    """The URL's parts, or why its form is refused whatever the setting."""
    if len(url) > MAX_URL:
        return None, f"is longer than {MAX_URL} characters"
    odd = next((i for i, c in enumerate(url) if not _URL_CHARACTER.fullmatch(c)), None)
    if odd is not None:
        return None, (
            f"must hold only the characters RFC 3986 allows: percent-encode character "
            f"{odd + 1} (U+{ord(url[odd]):04X})"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return None, f"is not a URL: {error}"
    if parts.scheme not in SCHEMES or not parts.netloc:
        return None, f"{url!r} must be an http:// or https:// URL with a host"
    if "@" in parts.netloc:
        return None, (
            "must not hold a user name or password (`user:pass@`): deliveries are never sent "
            "with a login (the signature proves the sender), and the URL is shown to every "
            "admin of the tenant"
        )
    if "#" in url:
        return None, "must not have a fragment (`#...`): it is never sent to the receiver"
    if port == 0:
        return None, "must not name port 0"
    host_problem = _host_problem(parts)
    if host_problem is None and len(_spelled(parts)) > MAX_URL:
        return None, f"is longer than {MAX_URL} characters once `/` is added for its empty path"
    return parts, host_problem


def _host_problem(parts: SplitResult) -> str | None:
    """Why the URL's host is not one name or address that every program reads alike."""
    hostname = parts.hostname or ""
    if parts.netloc.split("@")[-1].startswith("["):
        return _ipv6_problem(hostname)
    if not hostname:
        return "must name a host"
    if len(hostname) > MAX_HOST:
        return f"has a host longer than {MAX_HOST} characters"
    labels = hostname.removesuffix(".").split(".")
    if _NUMERIC.fullmatch(labels[-1]):
        return _ipv4_problem(hostname)
    bad = next((label for label in labels if not _LABEL.fullmatch(label)), None)
    if bad is not None:
        return (
            f"has a host {hostname!r} that is not a host name (label {bad!r}: letters, digits, "
            "'-' and '_'; an internationalised name in its xn-- form)"
        )
    return None


def _ipv4_problem(hostname: str) -> str | None:
    """None for an IPv4 address written as four decimal numbers; why any other spelling of one
    (decimal, octal, hexadecimal, short, with a trailing dot) is refused."""
    try:
        ipaddress.IPv4Address(hostname)
        return None
    except ValueError:
        pass
    try:
        read = f" (the resolver reads it as {socket.inet_ntoa(socket.inet_aton(hostname))})"
    except OSError:
        read = ""
    return (
        f"has a host {hostname!r} that is an IPv4 address in an unusual spelling{read}, which "
        "programs read differently: write it as four decimal numbers, a.b.c.d"
    )


def _ipv6_problem(hostname: str) -> str | None:
    """Why a bracketed host is not a plain IPv6 address (IPvFuture, a zone index)."""
    if "%" in hostname:
        return f"has a zone index in {hostname!r}: it names an interface of the service's machine"
    try:
        ipaddress.IPv6Address(hostname)
    except ValueError:
        return f"has a host [{hostname}] that is not an IPv6 address"
    return None
