"""The network's nodes as chain state: which node keys a node admits as peers, and where they listen.

Who may connect to a node is a consortium fact, so it is governed like the rest of membership and read from the
state of the node's own height — never from a configuration file each organisation would have to edit when another
joins or leaves. A **registered node** is a member key with a node role (``validator`` or ``observer``): it is
added with ``org.add``/``member.add`` and removed with ``member.revoke``/``org.remove``, and it may carry a network
**endpoint** (``host:port`` of its P2P listener) in ``sys:endpoint``, set by its own organisation's admin
(``node.endpoint``, SELF policy: an organisation says where its own machines are; nobody else can point
a validator's traffic elsewhere). Nodes dial the registered endpoints, so a new organisation's node needs only the
genesis and one seed address to find the whole network.

Pure code: the state comes in as a ``get(namespace, key)`` callable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from qilian.execution.chain import ChainRules
from qilian.execution.members import get_org, get_org_names
from qilian.execution.policy import MEMBER_NAMESPACE
from qilian.types.codec import decode_raw

StateGet = Callable[[str, bytes], bytes | None]

ENDPOINT_NAMESPACE: Final = "sys:endpoint"
"""Node key → its P2P endpoint as UTF-8 ``host:port`` (absent: the node is not dialled; it dials out)."""
NODE_ROLES: Final = frozenset({"validator", "observer"})
"""Roles that make a member key a node key: such a key is admitted as a peer (a client key never is)."""
MAX_HOST_CHARS: Final = 253
"""Longest host name of an endpoint (the DNS limit)."""
MAX_REGISTERED_NODES: Final = 4096
"""Most node keys read into one admission table; past this the chain's membership is not a consortium's and the
reader stops (the table is rebuilt only when membership changes, but must stay bounded)."""


@dataclass(frozen=True, slots=True)
class RegisteredNode:
    """A node key registered in chain state, as the P2P layer sees it."""

    public_key: bytes
    """The node key (what its Hello proves)."""
    org: str
    """Its organisation."""
    name: str
    """Its member name (for logs: ``org/name``)."""
    roles: frozenset[str]
    """Its roles (at least one of NODE_ROLES)."""
    endpoint: str
    """``host:port`` of its P2P listener, or empty when none is registered."""

    @property
    def label(self) -> str:
        """``org/name``, how logs and ``/status`` name the peer."""
        return f"{self.org}/{self.name}"


class EndpointError(ValueError):
    """An endpoint that is not ``host:port``; the message says what is wrong."""


def compute_endpoint(value: Any) -> tuple[str, int]:
    """(host, port) of an endpoint text ``host:port`` (``[v6]:port`` for IPv6). The host is an IP address or a
    DNS name of letters, digits, ``-`` and ``.``; the port 1..65535. Raises EndpointError."""
    if type(value) is not str or not 3 <= len(value) <= MAX_HOST_CHARS + 8:
        raise EndpointError(f"an endpoint is a text host:port of at most {MAX_HOST_CHARS + 8} characters")
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise EndpointError(f"endpoint {value!r}: expected host:port with a port 1..65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EndpointError(f"endpoint {value!r}: {host} is not an IPv6 address") from None
        return host[1:-1], int(port_text)
    if not host or len(host) > MAX_HOST_CHARS or not all(c.isascii() and (c.isalnum() or c in "-.") for c in host):
        raise EndpointError(f"endpoint {value!r}: the host is an IP address or a DNS name (letters, digits, - .)")
    return host, int(port_text)


def get_endpoint(state: StateGet, public_key: bytes) -> str:
    """The registered endpoint of a node key, or empty."""
    raw = state(ENDPOINT_NAMESPACE, public_key)
    return "" if raw is None else raw.decode()


def get_registered_node(state: StateGet, public_key: bytes) -> RegisteredNode | None:
    """The node registered under this key in ``state``, or None (not a member, revoked, or no node role)."""
    raw = state(MEMBER_NAMESPACE, public_key)
    if raw is None:
        return None
    org, name, roles = decode_raw(raw)
    if not NODE_ROLES & set(roles):
        return None
    return RegisteredNode(public_key, org, name, frozenset(roles), get_endpoint(state, public_key))


def get_registered_nodes(rules: ChainRules, state: StateGet) -> tuple[RegisteredNode, ...]:
    """Every registered node of ``state``, by organisation then key (a deterministic order; at most
    MAX_REGISTERED_NODES)."""
    out: list[RegisteredNode] = []
    for org in get_org_names(rules, state):
        record = get_org(state, org)
        if record is None:
            continue
        for key in record[2]:
            node = get_registered_node(state, key)
            if node is not None:
                out.append(node)
                if len(out) >= MAX_REGISTERED_NODES:
                    return tuple(out)
    return tuple(out)


__all__ = [
    "ENDPOINT_NAMESPACE",
    "MAX_REGISTERED_NODES",
    "NODE_ROLES",
    "EndpointError",
    "RegisteredNode",
    "compute_endpoint",
    "get_endpoint",
    "get_registered_node",
    "get_registered_nodes",
]
