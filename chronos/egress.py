"""Outbound safety: which hosts and addresses a webhook may be sent to.

One policy, used in two places (docs/security.md):

* at validation (``parse_job(..., egress=policy)`` and the API's PATCH): a URL whose
  host is a literal IP in a denied range, or a denied name, is refused with a
  field error on ``webhook.url`` that says how to fix it;
* at send time (:class:`chronos.dispatcher.Dispatcher`): every address a name
  resolves to is checked *before* connecting, so a name that points (or is
  re-pointed) at a metadata service is refused without a packet sent.

Rules, in order:

1. the allow-list (CIDRs, host names, ``*.domain`` wildcards) wins over every deny rule;
2. always denied: link-local (169.254.0.0/16, fe80::/10, which hold the cloud metadata
   services), "this network" 0.0.0.0/8, unspecified ``::``, multicast, reserved 240.0.0.0/4,
   the other well-known metadata addresses and names (``metadata.google.internal``, ...);
3. denied when ``deny_private``: 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier NAT), fc00::/7;
4. denied when ``deny_loopback``: 127/8, ::1 and the name ``localhost`` (allowed by default:
   local receivers and tests live there);
5. denied when ``deny_public``: everything else (only the allow-list, and what 3-4 leave
   open, is reachable).

IPv4-mapped IPv6 addresses (``::ffff:169.254.169.254``) are judged as the IPv4 address they
carry, and legacy IPv4 spellings (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``) as the address
the resolver would turn them into.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Union
from urllib.parse import urlsplit

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _nets(*cidrs: str) -> tuple[_Net, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# (range, what it is): the label goes into the error message.
ALWAYS_DENIED: tuple[tuple[_Net, str], ...] = tuple(
    (net, label)
    for cidrs, label in (
        (("169.254.0.0/16", "fe80::/10"), "link-local (cloud metadata)"),
        (("0.0.0.0/8", "::/128"), "unspecified"),
        (("224.0.0.0/4", "ff00::/8"), "multicast"),
        (("240.0.0.0/4",), "reserved"),
        # Metadata services outside link-local: Alibaba, Azure WireServer, AWS IMDS over IPv6.
        (("100.100.100.200/32", "168.63.129.16/32", "fd00:ec2::254/128"), "cloud metadata"),
    )
    for net in _nets(*cidrs)
)
PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
LOOPBACK = _nets("127.0.0.0/8", "::1/128")

#: Hosts whose check_host verdict a policy remembers.
VERDICT_CACHE_SIZE = 4096

METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)


class EgressDenied(Exception):
    """A webhook target the egress policy refuses. Deliberately not an ``OSError``:
    aiohttp must let it through unchanged instead of wrapping it as a DNS failure."""


def normalize_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets or zone id."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.split("%", 1)[0]


def parse_ip(host: str) -> Optional[IPAddress]:
    """The address a host names literally, or None for a DNS name. IPv4-mapped IPv6
    becomes IPv4; legacy IPv4 forms (``2852039166``, ``0x7f.1``) are read as
    ``inet_aton`` (and so getaddrinfo) reads them."""
    host = normalize_host(host)
    try:
        ip: IPAddress = ipaddress.ip_address(host)
    except ValueError:
        if not host or not all(c in "0123456789abcdefx." for c in host) or not host[0].isdigit():
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class EgressPolicy:
    """Where webhooks may go. The defaults are safe for any deployment: only
    link-local, metadata, unspecified, multicast and reserved targets are refused."""

    deny_private: bool = False
    deny_loopback: bool = False
    deny_public: bool = False
    allow: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> "EgressPolicy":
        return cls(
            deny_private=settings.egress_deny_private,
            deny_loopback=settings.egress_deny_loopback,
            deny_public=settings.egress_deny_public,
            allow=tuple(settings.egress_allow),
        )

    def __post_init__(self) -> None:
        nets, names = [], []
        for entry in self.allow:
            entry = entry.strip()
            if not entry:
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(normalize_host(entry))
        object.__setattr__(self, "_allow_nets", tuple(nets))
        object.__setattr__(self, "_allow_names", tuple(names))
        object.__setattr__(self, "_verdicts", {})  # host as written -> host_problem(host)

    # ------------------------------------------------------------ allow-list

    def _name_allowed(self, host: str) -> bool:
        for pattern in self._allow_names:  # type: ignore[attr-defined]
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
            if host == pattern:
                return True
        return False

    def _ip_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self._allow_nets)  # type: ignore[attr-defined]

    # ------------------------------------------------------------ checks

    def address_problem(self, ip: IPAddress) -> Optional[str]:
        """Why ``ip`` is refused (e.g. ``"link-local (cloud metadata)"``), or None."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if self._ip_allowed(ip):
            return None
        for net, label in ALWAYS_DENIED:
            if ip.version == net.version and ip in net:
                return label
        if any(ip.version == n.version and ip in n for n in LOOPBACK):
            return "loopback" if self.deny_loopback else None
        if any(ip.version == n.version and ip in n for n in PRIVATE):
            return "private" if self.deny_private else None
        return "public" if self.deny_public else None

    def name_problem(self, host: str) -> Optional[str]:
        """Why a DNS name is refused before it is even resolved, or None."""
        host = normalize_host(host)
        if self._name_allowed(host):
            return None
        if host in METADATA_NAMES:
            return "cloud metadata"
        if self.deny_loopback and (host == "localhost" or host.endswith(".localhost")):
            return "loopback"
        return None

    def host_problem(self, host: str) -> Optional[str]:
        """A literal IP is judged as an address, anything else as a name."""
        if self._name_allowed(normalize_host(host)):
            return None
        ip = parse_ip(host)
        return self.address_problem(ip) if ip is not None else self.name_problem(host)

    def check_host(self, host: str) -> None:
        """Raise :class:`EgressDenied` if ``host`` (as written in a URL) is refused. Verdicts
        are cached per host (the policy never changes): this runs before every request."""
        verdicts: dict[str, Optional[str]] = self._verdicts  # type: ignore[attr-defined]
        try:
            problem = verdicts[host]
        except KeyError:
            if len(verdicts) >= VERDICT_CACHE_SIZE:
                verdicts.clear()  # bounded: any host names a URL may hold
            problem = verdicts[host] = self.host_problem(host)
        if problem:
            raise EgressDenied(denied_message(host, problem))

    def check_resolved(self, host: str, addresses: Iterable[str]) -> None:
        """After DNS: every address ``host`` resolved to must pass, or none is used
        (a name mixing a public and a metadata address is an attack, not a fallback)."""
        if self._name_allowed(normalize_host(host)):
            return
        for address in addresses:
            ip = parse_ip(address)
            problem = "unparseable address" if ip is None else self.address_problem(ip)
            if problem:
                raise EgressDenied(denied_message(host, problem, resolved=address))

    def url_problem(self, url: str) -> Optional[str]:
        """The validation-time message for a webhook URL, or None when it may be used
        (a name is only checked against the name rules here; its addresses at send time)."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None  # the URL validator reports malformed URLs
        if not host:
            return None
        problem = self.host_problem(host)
        return denied_message(host, problem) if problem else None


def denied_message(host: str, problem: str, *, resolved: Optional[str] = None) -> str:
    where = f"{host} (resolved to {resolved})" if resolved else host
    return (
        f"webhook target {where} is not allowed: {problem} addresses are blocked by the server's "
        "egress policy; use a public host name, or ask the operator to add it to CHRONOS_EGRESS_ALLOW"
    )


DEFAULT_POLICY = EgressPolicy()
