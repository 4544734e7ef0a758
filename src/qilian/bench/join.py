"""A new organisation joining a running network, as the runbook does it — the steps shared by ``qilian bench
join`` and the real-process admission tests: governed actions executed with offline endorsements, node endpoints
registered by their own organisations, and the joining node's home made from ``org keygen`` + ``node join``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair

ENDORSE_DEADLINE_BLOCKS = 1000
"""Endorsements made here are good for this many blocks past the chain's height."""


class JoinError(RuntimeError):
    """A governed step that did not execute; the message carries the chain's answer."""


def execute_endorsed(api: str, submitter: KeyPair, endorsers: Sequence[KeyPair], action: list[Any]) -> dict[str, Any]:
    """Execute a governed action in one transaction: ``submitter`` sends ``gov.execute`` carrying the offline
    endorsements of ``endorsers`` (each an admin of another organisation). Waits for the commit; JoinError
    unless its receipt is ok."""
    from qilian.execution.modules.gov import compute_endorsement

    with Client(api) as c:
        status = c.get_status()
        deadline = int(status["height"]) + ENDORSE_DEADLINE_BLOCKS
        ends = [compute_endorsement(k.suite, k.private_key, k.public_key, status["chain_id"], action, deadline)
                for k in endorsers]
        res = c.call(submitter, "gov", "execute", [action, deadline, ends])
    receipt = res.get("receipt") or {}
    if res.get("status") != "committed" or receipt.get("status") != "ok":
        raise JoinError(f"{action[0]} did not execute: {res.get('status')} {receipt.get('error')}")
    return res


def register_endpoints(api: str, entries: Iterable[tuple[KeyPair, bytes, str]]) -> None:
    """Each organisation's admin registers its node's endpoint (``node.endpoint``, SELF: the admin alone):
    entries of (admin key, node public key, ``host:port``)."""
    for admin, node_key, endpoint in entries:
        execute_endorsed(api, admin, (), ["node.endpoint", node_key, endpoint])


def wait_until(what: str, cond: Any, timeout_s: float, interval_s: float = 0.1) -> float:
    """Poll ``cond()`` until true (HTTP errors count as not yet); seconds it took, or JoinError on timeout."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() - t0 > timeout_s:
            raise JoinError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def get_height(api: str) -> int:
    """A node's committed height."""
    return int(httpx.get(api + "/status", timeout=5).json()["height"])


def get_signers(api: str, height: int) -> set[str]:
    """Addresses (hex) whose precommits are in the commit of ``height``."""
    doc = httpx.get(f"{api}/blocks/{height}", timeout=5).json()
    return {s["validator"] for s in (doc.get("commit") or {}).get("signatures", [])}


@dataclass(frozen=True)
class Joiner:
    """A joining organisation's node and keys, made by ``org keygen`` + ``node join``."""

    org: str
    """Its organisation."""
    home: Path
    """The node's home."""
    node_key: KeyPair
    """The node key."""
    admin: KeyPair
    """The organisation's admin key."""
    org_json: Path
    """Its public org.json (what ``org add`` reads)."""
    api: str
    """The node's API URL."""
    p2p: str
    """``host:port`` of its P2P listener."""

    def org_add_action(self) -> list[Any]:
        """``org.add`` of this organisation with its admin key and its node key (role validator)."""
        import json

        doc = json.loads(self.org_json.read_text())
        members = [[m["name"], bytes.fromhex(m["public_key"]), list(m["roles"])] for m in doc["members"]]
        members += [[n["name"], bytes.fromhex(n["public_key"]), ["validator"]] for n in doc["nodes"]]
        return ["org.add", self.org, members, {"title": f"{self.org} (joined at run time)"}]


def make_joiner(root: Path, org: str, suite: str, genesis: Path, seed: str, api_port: int, p2p_port: int,
                timeouts: dict[str, int]) -> Joiner:
    """Keys, TLS identity and home of a new organisation's node that knows only ``genesis`` and ``seed``."""
    from qilian.node.bootstrap import process_node_join, process_org_keygen
    from qilian.sdk.keys import load_key

    res = process_org_keygen(root / org, org, suite, 1, "127.0.0.1", p2p_port, api_port)
    home = res.node_homes[0]
    process_node_join(home, genesis, [seed], timeouts=timeouts)
    node_key = load_key(next((home / "keys").glob("*.pem")))
    admin = load_key(res.key_files[f"{org}-admin"])
    return Joiner(org, home, node_key, admin, res.org_json, f"http://127.0.0.1:{api_port}",
                  f"127.0.0.1:{p2p_port}")


__all__ = ["ENDORSE_DEADLINE_BLOCKS", "JoinError", "Joiner", "execute_endorsed", "get_height", "get_signers",
           "make_joiner", "register_endpoints", "wait_until"]
