"""Trusted reverse proxies: who the client is and which scheme it used.

Rules:
- Headers are read only when the direct peer is trusted; otherwise they are ignored.
- Trust list entries are IP addresses, CIDR networks or "*" (everything). A unix-socket
  peer (client None) has no address and is trusted only under "*".
- RFC 7239 `Forwarded` takes precedence over `X-Forwarded-For`/`X-Forwarded-Proto` when it
  is present and well formed. A malformed `Forwarded` is ignored as a whole, never parsed
  "as far as it goes": the part that parses may be the client's and the part lost the
  proxy's (a client can leave a quote open in the header the proxy then extends).
- The client is the right-most hop that is not itself a trusted proxy (hops to its left
  were written by the client and can be anything). If that hop is unusable ("unknown",
  an obfuscated "_name", garbage) the peer address stays: we never walk past a hop we
  cannot check and never invent an address. If every hop is trusted, the left-most wins.
- A port the proxy reports is kept (RFC 6302 asks for source ports in logs); 0 otherwise.
- Malformed values never raise, and a request without these headers costs one pass over
  its header list.
"""

from __future__ import annotations

import ipaddress
import re

_FORWARDED = b"forwarded"
_X_FORWARDED_FOR = b"x-forwarded-for"
_X_FORWARDED_PROTO = b"x-forwarded-proto"
# A request without any of these is resolved to its own peer without calling resolve().
FORWARDING_FIELDS = frozenset((_FORWARDED, _X_FORWARDED_FOR, _X_FORWARDED_PROTO))

_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}

# One forwarded-pair (RFC 7239 §4) and the separator after it. Unquoted values are allowed
# a little more than `token` (':' and brackets) because real proxies send them that way.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PAIR = re.compile(
    rf'[ \t]*({_TOKEN})=("(?:[^"\\]|\\.)*"|[^ \t;,"]+)[ \t]*([;,]?)',
)
_EMPTY_ELEMENT = re.compile(r"[ \t]*,")
_QUOTED_PAIR = re.compile(r"\\(.)")
_PORT = re.compile(r"[0-9]{1,5}|_[A-Za-z0-9._-]+")

# Hop verdicts for the CIDR path are cached; the set of peers a worker sees is small.
_VERDICT_CACHE_SIZE = 1024

Client = tuple[str, int]
_Element = dict[str, str]


class ProxyTrust:
    def __init__(self, allow: tuple[str, ...]) -> None:
        self._all = False
        hosts: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in allow:
            entry = raw.strip()
            if entry == "*":
                self._all = True
            elif "/" in entry:
                networks.append(_network(entry))
            else:
                hosts.add(str(_address(entry)))
        self._hosts = frozenset(hosts)
        self._networks = tuple(networks)
        self._verdicts: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        if self._all:
            return True
        if host is None:
            return False
        if host in self._hosts:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self._check(host)
            if len(self._verdicts) >= _VERDICT_CACHE_SIZE:
                self._verdicts.clear()
            self._verdicts[host] = verdict
        return verdict

    def _check(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if str(address) in self._hosts:
            return True
        return any(address in network for network in self._networks)

    def resolve(
        self, client: Client | None, scheme: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[Client | None, str]:
        """The (client, scheme) a trusted proxy reports, else the connection's own."""
        if not self.trusts(client[0] if client is not None else None):
            return client, scheme
        forwarded: list[bytes] = []
        xff: list[bytes] = []
        xfp: list[bytes] = []
        for name, value in headers:
            if name == _FORWARDED:
                forwarded.append(value)
            elif name == _X_FORWARDED_FOR:
                xff.append(value)
            elif name == _X_FORWARDED_PROTO:
                xfp.append(value)
        if forwarded:
            elements = _parse_forwarded(b",".join(forwarded).decode("latin-1"))
            if elements:
                return self._from_forwarded(elements, client, scheme)
        if xff or xfp:
            return self._from_x_forwarded(xff, xfp, client, scheme)
        return client, scheme

    def _from_forwarded(
        self, elements: list[_Element], client: Client | None, scheme: str
    ) -> tuple[Client | None, str]:
        hops = [_parse_node(element.get("for", "")) for element in elements]
        index = self._client_index(hops)
        hop = hops[index]
        proto = elements[index].get("proto")
        return (hop if hop is not None else client), _scheme(proto, scheme)

    def _from_x_forwarded(
        self, xff: list[bytes], xfp: list[bytes], client: Client | None, scheme: str
    ) -> tuple[Client | None, str]:
        protos = _split_list(xfp)
        hops = [_parse_node(item) for item in _split_list(xff)]
        if not hops:
            return client, _scheme(protos[-1] if protos else None, scheme)
        index = self._client_index(hops)
        hop = hops[index]
        # One proto per hop only when every proxy appended; otherwise the nearest one wins.
        proto = protos[index] if len(protos) == len(hops) else (protos[-1] if protos else None)
        return (hop if hop is not None else client), _scheme(proto, scheme)

    def _client_index(self, hops: list[Client | None]) -> int:
        """Index of the right-most hop that is unusable or not a trusted proxy."""
        for index in range(len(hops) - 1, -1, -1):
            hop = hops[index]
            if hop is None or not self.trusts(hop[0]):
                return index
        return 0


def _address(entry: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(entry)
    except ValueError:
        raise ValueError(
            f"forwarded_allow_ips: {entry!r} is not an IP address, a CIDR network or '*'"
        ) from None


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(f"forwarded_allow_ips: {entry!r} is not a valid CIDR network") from None


def _split_list(values: list[bytes]) -> list[str]:
    items = (item.strip() for value in values for item in value.decode("latin-1").split(","))
    return [item for item in items if item]


def _scheme(proto: str | None, current: str) -> str:
    """Apply a reported proto: it decides http vs https; ws stays ws (and wss)."""
    if proto is None:
        return current
    proto = proto.strip().lower()
    if proto not in _HTTP_SCHEMES:
        return current
    table = _WS_SCHEMES if current in ("ws", "wss") else _HTTP_SCHEMES
    return table[proto]


def _parse_forwarded(text: str) -> list[_Element]:
    """RFC 7239 elements as dicts of lowercased names; [] when anything is malformed."""
    elements: list[_Element] = []
    current: _Element = {}
    position, end = 0, len(text)
    while position < end:
        if not current:
            empty = _EMPTY_ELEMENT.match(text, position)
            if empty is not None:
                position = empty.end()
                continue
            if not text[position:].strip():
                break
        match = _PAIR.match(text, position)
        if match is None:
            return []
        name, value, separator = match.group(1).lower(), match.group(2), match.group(3)
        if name in current:
            return []  # RFC 7239 §4: a parameter occurs at most once per element
        if value.startswith('"'):
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        current[name] = value
        position = match.end()
        if separator == ",":
            elements.append(current)
            current = {}
        elif not separator and position < end:
            return []
    if current:
        elements.append(current)
    return elements


def _parse_node(text: str) -> Client | None:
    """A hop as (ip, port), or None for "unknown", obfuscated names and garbage."""
    text = text.strip()
    if not text:
        return None
    host, port = text, "0"
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] or "0"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if _PORT.fullmatch(port) is None:
        return None
    number = 0 if port.startswith("_") else int(port)
    if number > 65535:
        return None
    return str(address), number
