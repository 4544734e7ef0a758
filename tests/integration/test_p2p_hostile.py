"""Hostile peers against a real node: a node key chain state does not register, a HelloProof signed by the wrong
key, oversized frames, garbage and forged votes. Each is refused or disconnected, counted, and the chain keeps
committing."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.crypto import get_suite
from qilian.p2p.messages import Hello, HelloProof, compute_hello_sign_bytes, decode_message, encode_message
from qilian.p2p.tls import create_tls_identity, get_cert_hash, make_context
from qilian.sdk.client import Client
from qilian.sdk.keys import generate_key, load_key
from qilian.types.core import PREVOTE, Vote

from .netutil import Net, make_net

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def net3(tmp_path: Path) -> Iterator[Net]:
    """Four configured validators, three running: the test plays the fourth."""
    n = make_net(tmp_path)
    for node in n.nodes[:3]:
        node.start()
    try:
        yield n
    finally:
        n.stop_all()


def _p2p_port(net: Net, i: int) -> int:
    import tomllib

    return int(tomllib.loads((net.nodes[i].home / "node.toml").read_text())["p2p"]["port"])


async def _connect(net: Net, tls_dir: Path, node_key_path: Path | None, signer: bytes | None = None,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Hello | None]:
    """Dial node 0 as a peer: Hello, then a HelloProof signed with ``signer`` (or the node key); returns node 0's
    Hello once its HelloProof arrived too (None when it closed the connection instead)."""
    ctx = make_context(False, tls_dir / "node.crt", tls_dir / "node.key")
    reader, writer = await asyncio.open_connection("127.0.0.1", _p2p_port(net, 0), ssl=ctx, server_hostname=None)
    suite = get_suite("ed25519")
    key = load_key(node_key_path) if node_key_path else generate_key("ed25519")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    genesis_hash = _genesis_hash(net)
    nonce = os.urandom(32)
    body = encode_message(Hello("fault-chain", genesis_hash, key.public_key, 0, nonce))
    writer.write(struct.pack(">I", len(body)) + body)
    await writer.drain()
    try:
        n = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))[0]
        hello = decode_message(await reader.readexactly(n))
        sig = suite.sign(signer or key.private_key, compute_hello_sign_bytes(
            "fault-chain", genesis_hash, get_cert_hash(der), True, nonce, hello.nonce))
        body = encode_message(HelloProof(sig))
        writer.write(struct.pack(">I", len(body)) + body)
        await writer.drain()
        n = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))[0]
        assert isinstance(decode_message(await reader.readexactly(n)), HelloProof)
        return reader, writer, hello
    except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
        return reader, writer, None


async def _is_closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), timeout)
            if not data:
                return True
    except (ConnectionError, asyncio.IncompleteReadError):
        return True
    except TimeoutError:
        return False


def _genesis_hash(net: Net) -> bytes:
    return bytes.fromhex(httpx.get(net.nodes[0].url + "/status", timeout=5).json()["genesis_hash"])


def _violations(net: Net) -> int:
    return int(httpx.get(net.nodes[0].url + "/status", timeout=5).json()["p2p_violations"])


def _refused(net: Net) -> int:
    return int(httpx.get(net.nodes[0].url + "/status", timeout=5).json()["p2p_refused"])


def test_hostile_peers_are_refused_and_the_chain_carries_on(net3: Net, tmp_path: Path) -> None:
    net = net3
    net.wait_height(net.nodes[:3], 1, 30)
    node3 = net.nodes[3].home

    async def scenario() -> None:
        # 1. A stranger: any TLS identity gets to the Hello, but its node key is no node of chain state: refused
        # (counted as refused, not as a protocol violation), and the connection is closed before any proof.
        stranger = tmp_path / "stranger"
        create_tls_identity(stranger, "stranger")
        before = _refused(net)
        _, w, hello = await _connect(net, stranger, None)
        assert hello is None
        w.close()
        assert _refused(net) == before + 1

        # 2. Node 3's registered key in the Hello, but the HelloProof signed by another key: a violation.
        before = _violations(net)
        r, w, _ = await _connect(net, node3 / "tls", node3 / "keys" / "node3.pem",
                                 signer=generate_key("ed25519").private_key)
        assert await _is_closed_by_peer(r)
        w.close()
        assert _violations(net) == before + 1

        # 3. Node 3's real keys, then protocol abuse: each one ends the connection.
        node_key = node3 / "keys" / "node3.pem"
        for abuse in ("oversized", "garbage", "forged_vote", "second_hello"):
            before = _violations(net)
            r, w, hello = await _connect(net, node3 / "tls", node_key)
            assert isinstance(hello, Hello), "an honest Hello must be accepted"
            if abuse == "oversized":
                w.write(struct.pack(">I", 512 * 1024 * 1024))
            elif abuse == "garbage":
                w.write(struct.pack(">I", 5) + b"\xc1\xff\x00\x01\x02")
            elif abuse == "forged_vote":
                k = load_key(node_key)
                # A vote for the height being decided, so its signature is checked (not merely ignored).
                h = net.height(net.nodes[0]) + 1
                body = encode_message(Vote(PREVOTE, h, 0, b"", k.address, b"\x01" * 64))
                w.write(struct.pack(">I", len(body)) + body)
            else:
                body = encode_message(hello)
                w.write(struct.pack(">I", len(body)) + body)
            await w.drain()
            assert await _is_closed_by_peer(r), f"{abuse}: node 0 kept the connection"
            w.close()
            assert _violations(net) == before + 1, abuse

    asyncio.run(scenario())
    # The node is alive and the chain still commits.
    c = Client(net.nodes[0].url)
    res = c.call(net.client_key, "kv", "put", ["after-abuse", "ok"])
    assert res["status"] == "committed"
