"""Keep webhook requests away from the registry's own network.

Checked twice: when a URL is saved (a clear 400 for the obvious cases) and when a connection is
opened, against every address the name resolves to at that moment, so DNS tricks after the save
change nothing. MODELGATE_WEBHOOK_ALLOWED_NETWORKS lets chosen ranges through (development and
tests); cloud metadata addresses stay refused even then.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpcore
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack …
        "169.254.170.2",  # AWS ECS task credentials
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "instance-data"})
CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UrlRefused(ValueError):
    """A webhook URL that may not be used; the message says why."""


@cache
def _allowed_networks(spec: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in spec if cidr.strip())


def allowed_networks() -> tuple[Any, ...]:
    return _allowed_networks(tuple(settings.MODELGATE_WEBHOOK_ALLOWED_NETWORKS))


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv4-mapped, 6to4 or NAT64-style IPv6 address, if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def address_refusal(address: str | IPAddress) -> str | None:
    """Why the address may not be connected to, or None when it may."""
    ip = _unwrap(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if any(ip.version == net.version and ip in net for net in allowed_networks()):
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.version == 4 and ip in CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a unicast address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, including the legacy IPv4 spellings (`127.1`,
    `0x7f000001`, `2130706433`, octal) that resolvers accept."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def url_check(url: str) -> str:
    """Refuse URLs a webhook may not use (UrlRefused); returns the URL unchanged."""
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("A webhook needs a URL.")
    if len(url) > 2048:
        raise UrlRefused("The URL is longer than 2048 characters.")
    if any(c in url for c in "\x00\r\n\t ") or not url.isprintable():
        raise UrlRefused("The URL contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"The URL is malformed: {exc}.") from exc
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("The URL must start with http:// or https://.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused(
            "The URL must not contain credentials; send them as a header (e.g. Authorization)."
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlRefused("The URL has no host.")
    if port == 0:
        raise UrlRefused("The URL's port must be between 1 and 65535.")
    lowered = host.lower()
    if lowered == "localhost" or lowered.endswith(".localhost"):
        raise UrlRefused(f"The URL's host '{host}' is the registry's own machine.")
    if lowered in METADATA_NAMES:
        raise UrlRefused(f"The URL's host '{host}' is a cloud metadata service.")
    literal = _literal_address(host)
    if literal is not None:
        refusal = address_refusal(literal)
        if refusal:
            raise UrlRefused(f"The URL's host {host} is {refusal}; webhooks go to public hosts.")
        return url
    # A name is resolved now for a clear answer; one that does not resolve yet is accepted and
    # checked again at every connection.
    try:
        addresses = _resolve(host, port or (443 if parts.scheme == "https" else 80))
    except OSError:
        addresses = []
    for address in addresses:
        refusal = address_refusal(address)
        if refusal:
            raise UrlRefused(
                f"The URL's host {host} resolves to {address}, {refusal}; webhooks go to "
                "public hosts."
            )
    return url


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.SyncBackend):
    """Opens connections only to addresses the guard allows, checked when connecting.

    The name is resolved here and the connection made to the checked address, so a name that
    resolves differently between the check and the connect cannot slip through. A name with any
    refused address is refused altogether.
    """

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = _resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"Cannot resolve {host}: {exc}") from exc
        for address in addresses:
            refusal = address_refusal(address)
            if refusal:
                raise httpcore.ConnectError(f"Refused to connect to {host} ({address}): {refusal}.")
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"No address for {host}")
