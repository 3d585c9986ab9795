"""What the packet never carries, taken out of any text: IP addresses become ``[ip]``, URLs
lose their query string, fragment and user info (rules.evidence)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from rules.redaction import bare_urls

IP_MARK = "[ip]"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})

_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)(?!\w)")
# Candidates only: a run of hex digits and colons (an IPv4 tail allowed), kept as an address
# when ``ipaddress`` reads it as one and it has the colons of one (not a ``13:46:12`` time).
_IPV6 = re.compile(
    r"\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]"
    r"|(?<![\w:.])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(?![\w:])"
)


def sanitize(text: str) -> str:
    """``text`` without IP addresses (``[ip]``) and with every URL cut to scheme, host, port
    and path (no query string, fragment or user info). Idempotent."""
    text = _IPV4.sub(_ipv4_mark, bare_urls(text))
    return _IPV6.sub(_ipv6_mark, text)


def sanitize_json(value: Any) -> Any:
    """Every string of a JSON-like value sanitized (keys too), the rest as it is."""
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, Mapping):
        return {sanitize(str(key)): sanitize_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize_json(item) for item in value]
    return value


def _ipv4_mark(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return match.group(0)  # 999.1.2.3, a version number: not an address
    return IP_MARK


def _ipv6_mark(match: re.Match[str]) -> str:
    found = match.group(0)
    candidate = found.strip("[]")
    if "::" not in candidate and candidate.count(":") < 7 and "." not in candidate:
        return found  # a time (13:46:12), a ratio: too few groups for a full address
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return found
    return IP_MARK


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine (a local stand-in listens there)."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
