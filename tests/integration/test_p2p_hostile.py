"""Hostile peers against a real node: unknown certificates, a Hello signed by the wrong key, oversized frames,
garbage and forged votes. Each is refused or disconnected, counted, and the chain keeps committing."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qilian.crypto import get_suite
from qilian.p2p.messages import Hello, compute_hello_sign_bytes, decode_message, encode_message
from qilian.p2p.tls import create_tls_identity, get_cert_hash, get_own_cert_der, make_context
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


async def _connect(net: Net, tls_dir: Path, bundle: Path, node_key_path: Path | None, signer: bytes | None = None,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Hello | None]:
    """Dial node 0 as a peer; send a Hello signed with ``signer`` (or the node key); return node 0's Hello."""
    ctx = make_context(False, tls_dir / "node.crt", tls_dir / "node.key", bundle)
    reader, writer = await asyncio.open_connection("127.0.0.1", _p2p_port(net, 0), ssl=ctx,
                                                   server_hostname="127.0.0.1")
    suite = get_suite("ed25519")
    key = load_key(node_key_path) if node_key_path else generate_key("ed25519")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    genesis_hash = _genesis_hash(net)
    sig = suite.sign(signer or key.private_key, compute_hello_sign_bytes(
        "fault-chain", genesis_hash, get_cert_hash(get_own_cert_der(tls_dir / "node.crt")), get_cert_hash(der)))
    body = encode_message(Hello("fault-chain", genesis_hash, key.public_key, 0, sig))
    writer.write(struct.pack(">I", len(body)) + body)
    await writer.drain()
    try:
        n = struct.unpack(">I", await asyncio.wait_for(reader.readexactly(4), 5))[0]
        return reader, writer, decode_message(await reader.readexactly(n))
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


def test_hostile_peers_are_refused_and_the_chain_carries_on(net3: Net, tmp_path: Path) -> None:
    net = net3
    net.wait_height(net.nodes[:3], 1, 30)
    node3 = net.nodes[3].home
    bundle = node3 / "tls" / "network.pem"

    async def scenario() -> None:
        # 1. A certificate outside the network bundle: TLS itself refuses it.
        stranger = tmp_path / "stranger"
        create_tls_identity(stranger, "stranger")
        own_bundle = tmp_path / "stranger-bundle.pem"
        own_bundle.write_bytes(bundle.read_bytes())
        try:
            _, w, hello = await _connect(net, stranger, own_bundle, None)
            assert hello is None
            w.close()
        except (ConnectionError, OSError):
            pass

        # 2. A valid TLS identity (node 3's) but a Hello from a key that is not in the network.
        before = _violations(net)
        _, w, hello = await _connect(net, node3 / "tls", bundle, None)
        w.close()
        assert _violations(net) == before + 1

        # 3. Node 3's real keys, then protocol abuse: each one ends the connection.
        node_key = node3 / "keys" / "node3.pem"
        for abuse in ("oversized", "garbage", "forged_vote", "second_hello"):
            before = _violations(net)
            r, w, hello = await _connect(net, node3 / "tls", bundle, node_key)
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
