"""Registered nodes and their endpoints as chain state (P2P admission): who counts as a node, ``node.endpoint``
under its SELF policy, and removal by governance unregistering the key (and dropping its endpoint)."""

from __future__ import annotations

import pytest

from qilian.execution.nodes import EndpointError, compute_endpoint, get_registered_node, get_registered_nodes
from tests.unit.blockrunner import failed, ok
from tests.unit.test_membership import ADMINS, CLIENTS, NEW_VAL, RULES, VALS, Chain, org_add_action


@pytest.mark.parametrize("text,expected", [("127.0.0.1:26656", ("127.0.0.1", 26656)),
                                           ("node-1.port.example.cn:1", ("node-1.port.example.cn", 1)),
                                           ("[::1]:26656", ("::1", 26656))])
def test_endpoints_parse(text: str, expected: tuple[str, int]) -> None:
    assert compute_endpoint(text) == expected


@pytest.mark.parametrize("text", ["", "host", "host:0", "host:65536", "host:port", "ho st:1", "[zz]:1", 7,
                                  "a" * 300 + ":1", "host:+1"])
def test_bad_endpoints_are_refused(text: object) -> None:
    with pytest.raises(EndpointError):
        compute_endpoint(text)


def test_node_keys_are_registered_clients_are_not() -> None:
    c = Chain()
    nodes = get_registered_nodes(RULES, c.get_state)
    assert {n.public_key for n in nodes} == {v.public_key for v in VALS}
    assert all(n.endpoint == "" and "validator" in n.roles for n in nodes)
    assert get_registered_node(c.get_state, CLIENTS[0].public_key) is None
    assert get_registered_node(c.get_state, ADMINS[0].public_key) is None


def test_an_org_sets_its_own_nodes_endpoint_only() -> None:
    c = Chain()
    # SELF: alpha's admin alone sets alpha's node endpoint
    ok(c.one(ADMINS[0], "gov", "execute", [["node.endpoint", VALS[0].public_key, "10.0.0.1:26656"], 100, []]))
    assert get_registered_node(c.get_state, VALS[0].public_key).endpoint == "10.0.0.1:26656"  # type: ignore[union-attr]
    # …but not beta's
    err = failed(c.one(ADMINS[0], "gov", "execute", [["node.endpoint", VALS[1].public_key, "10.0.0.9:1"], 100, []]))
    assert "node.endpoint is SELF" in err and "beta" in err
    # only node keys have endpoints; the text is checked
    err = failed(c.one(ADMINS[0], "gov", "execute", [["node.endpoint", CLIENTS[0].public_key, "10.0.0.1:1"], 100,
                                                     []]))
    assert "no node role" in err
    err = failed(c.one(ADMINS[0], "gov", "execute", [["node.endpoint", VALS[0].public_key, "10.0.0.1"], 100, []]))
    assert "host:port" in err
    # an empty text removes it
    ok(c.one(ADMINS[0], "gov", "execute", [["node.endpoint", VALS[0].public_key, ""], 100, []]))
    assert get_registered_node(c.get_state, VALS[0].public_key).endpoint == ""  # type: ignore[union-attr]


def test_a_removed_org_unregisters_its_node_and_drops_the_endpoint() -> None:
    c = Chain()
    c.vote_through(org_add_action(), ADMINS[:3])
    assert get_registered_node(c.get_state, NEW_VAL.public_key) is not None
    from tests.unit.test_membership import NEW_ADMIN

    ok(c.one(NEW_ADMIN, "gov", "execute", [["node.endpoint", NEW_VAL.public_key, "10.0.0.5:26656"], 100, []]))
    assert len(get_registered_nodes(RULES, c.get_state)) == 5
    c.vote_through(["org.remove", "epsilon"], ADMINS[:3])
    assert get_registered_node(c.get_state, NEW_VAL.public_key) is None
    assert c.get_state("sys:endpoint", NEW_VAL.public_key) is None
    assert len(get_registered_nodes(RULES, c.get_state)) == 4
