"""Which URLs webhooks may be delivered to: http or https, to a public address unless the
operator allows private ones (a tenant admin must not reach the service's own network).

Checked when an endpoint is added, and on every delivery against the addresses the name
resolves to then (a name can be pointed elsewhere after it was added).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from service.limits import MAX_URL

SCHEMES = ("http", "https")


def host(url: str) -> str:
    """The URL's host name (for an endpoint's default name)."""
    return urlsplit(url).hostname or url


def problem(url: str, *, allow_private: bool) -> str | None:
    """Why the service may not deliver to this URL, in words; None when it may."""
    if len(url) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"is not a URL: {error}"
    if parts.scheme not in SCHEMES or not parts.hostname:
        return f"{url!r} must be an http:// or https:// URL with a host"
    if allow_private:
        return None
    try:
        found = resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    except OSError as error:
        return f"host {parts.hostname!r} cannot be resolved: {error}"
    private = [a for a in found if not is_public(a)]
    if private:
        return (
            f"host {parts.hostname!r} is a private address ({private[0]}): refused unless "
            "WORKFLOW_AUTHZ_WEBHOOK_ALLOW_PRIVATE=true"
        )
    return None


def resolve(hostname: str, port: int) -> list[str]:
    """Every address the name resolves to now."""
    return sorted(
        {str(info[4][0]) for info in socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)}
    )


def is_public(address: str) -> bool:
    """Whether an address is on the public internet: not loopback, link-local, private,
    reserved, multicast or unspecified (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast
