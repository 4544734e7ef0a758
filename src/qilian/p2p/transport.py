"""Authenticated, encrypted connections to the other nodes of the network.

One TLS 1.3 connection per pair of nodes: the node with the smaller address dials, the other accepts. After TLS
(which already refuses certificates outside the network bundle) each side sends a signed Hello; a connection whose
Hello does not name a configured node key, the same chain and genesis, or whose signature does not bind this TLS
session, is closed. Every frame is length-prefixed and bounded; a peer that sends a frame that is too large, not
canonical or invalid is disconnected — the node carries on with the others and the dialer retries later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qilian.crypto.suite import Suite
from qilian.p2p.messages import (
    MAX_FRAME_BYTES,
    Hello,
    PeerViolation,
    compute_hello_sign_bytes,
    decode_message,
    encode_message,
)
from qilian.p2p.tls import get_cert_hash, get_own_cert_der, make_context
from qilian.types.codec import CodecError
from qilian.types.struct import Wire

log = logging.getLogger("qilian.p2p")

HANDSHAKE_TIMEOUT_S = 5.0
"""TLS handshake plus Hello must finish within this time."""
MAX_QUEUED_FRAMES = 20_000
"""Frames waiting to be written to one peer; a peer that falls this far behind is disconnected."""
REDIAL_MIN_S = 0.2
"""First wait before re-dialing a lost peer."""
REDIAL_MAX_S = 2.0
"""Longest wait between dial attempts (the wait doubles up to this)."""


@dataclass(frozen=True)
class PeerSpec:
    """A node of the network as configured in ``network.toml``."""

    name: str
    """Its name (for logs)."""
    public_key: bytes
    """Its node key."""
    address: bytes
    """Address of its node key."""
    host: str
    """Host its P2P listener is reachable at."""
    port: int
    """Its P2P port."""


@dataclass(eq=False)
class Peer:
    """A live, authenticated connection."""

    spec: PeerSpec
    writer: asyncio.StreamWriter
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(MAX_QUEUED_FRAMES))
    height: int = 0
    """The peer's committed height, from its Hello and Status messages."""
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def send_frame(self, body: bytes) -> bool:
        """Queue a frame; False (and the peer is dropped) when it is too far behind."""
        if self.closed.is_set():
            return False
        try:
            self.queue.put_nowait(body)
            return True
        except asyncio.QueueFull:
            log.warning("peer %s is %d frames behind; disconnecting it", self.spec.name, MAX_QUEUED_FRAMES)
            self.close()
            return False

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)
            self.writer.close()


OnMessage = Callable[[Peer, Any], Awaitable[None] | None]


class Transport:
    """Listens, dials and keeps one authenticated connection to every other configured node."""

    def __init__(self, *, suite: Suite, private_key: bytes, public_key: bytes, chain_id: str, genesis_hash: bytes,
                 peers: list[PeerSpec], listen_host: str, listen_port: int, tls_dir: Path,
                 on_message: OnMessage, on_peer_up: Callable[[Peer], None], get_height: Callable[[], int],
                 blocked: frozenset[str] = frozenset()):
        self.suite = suite
        self.private_key = private_key
        self.public_key = public_key
        self.address = suite.compute_address(public_key)
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.blocked = blocked
        """Names of configured peers this node neither dials nor accepts (``[p2p] blocked_peers``)."""
        self.specs = {p.public_key: p for p in peers if p.public_key != public_key and p.name not in blocked}
        self._blocked_keys = {p.public_key for p in peers if p.name in blocked}
        self.listen_host = listen_host
        self.listen_port = listen_port
        crt, key, bundle = tls_dir / "node.crt", tls_dir / "node.key", tls_dir / "network.pem"
        self.server_ctx = make_context(True, crt, key, bundle)
        self.client_ctx = make_context(False, crt, key, bundle)
        self.own_cert_hash = get_cert_hash(get_own_cert_der(crt))
        self.on_message = on_message
        self.on_peer_up = on_peer_up
        self.get_height = get_height
        self.peers: dict[bytes, Peer] = {}
        """Connected peers by address."""
        self.violations = 0
        """Connections closed for protocol violations (exposed in /status)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_inbound, self.listen_host, self.listen_port,
                                                  ssl=self.server_ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
                                                  limit=MAX_FRAME_BYTES + 8)
        for spec in self.specs.values():
            if self.address < spec.address:
                self._spawn(self._dial_loop(spec))

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for p in list(self.peers.values()):
            p.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- sending -----------------------------------------------------------------------------------------

    def broadcast(self, msg: Wire, exclude: frozenset[bytes] | set[bytes] = frozenset()) -> None:
        """Send to every connected peer except those in ``exclude`` (addresses); encoded once."""
        body = encode_message(msg)
        for addr, p in list(self.peers.items()):
            if addr not in exclude:
                p.send_frame(body)

    def send(self, address: bytes, msg: Wire) -> bool:
        """Send to one peer if connected."""
        p = self.peers.get(address)
        return p.send_frame(encode_message(msg)) if p is not None else False

    # -- connections -------------------------------------------------------------------------------------

    async def _dial_loop(self, spec: PeerSpec) -> None:
        wait = REDIAL_MIN_S
        while not self._stopping:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(spec.host, spec.port, ssl=self.client_ctx, server_hostname=spec.host,
                                            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S, limit=MAX_FRAME_BYTES + 8),
                    HANDSHAKE_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                log.debug("dial %s %s:%d failed: %s", spec.name, spec.host, spec.port, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, REDIAL_MAX_S)
                continue
            peer = await self._handshake(reader, writer, spec)
            if peer is not None:
                wait = REDIAL_MIN_S
                await self._serve(peer, reader)
            if not self._stopping:
                await asyncio.sleep(wait)
                wait = min(wait * 2, REDIAL_MAX_S)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            peer = await self._handshake(reader, writer, None)
            if peer is not None:
                await self._serve(peer, reader)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         expected: PeerSpec | None) -> Peer | None:
        """Exchange Hellos; return the authenticated peer or close the connection."""
        ssl_obj = writer.get_extra_info("ssl_object")
        der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        if not der:
            writer.close()
            return None
        peer_cert_hash = get_cert_hash(der)
        sig = self.suite.sign(self.private_key, compute_hello_sign_bytes(self.chain_id, self.genesis_hash,
                                                                         self.own_cert_hash, peer_cert_hash))
        hello = Hello(self.chain_id, self.genesis_hash, self.public_key, self.get_height(), sig)
        try:
            body = encode_message(hello)
            writer.write(struct.pack(">I", len(body)) + body)
            msg = await asyncio.wait_for(self._read_frame(reader), HANDSHAKE_TIMEOUT_S)
            if not isinstance(msg, Hello):
                raise PeerViolation("first message is not a Hello")
            if msg.chain_id != self.chain_id or msg.genesis_hash != self.genesis_hash:
                raise PeerViolation(f"peer is on chain {msg.chain_id!r} with another genesis")
            if msg.public_key in self._blocked_keys:
                writer.close()
                return None
            spec = self.specs.get(msg.public_key)
            if spec is None or (expected is not None and spec is not expected):
                raise PeerViolation("peer key is not the configured node for this connection")
            if not self.suite.verify(msg.public_key, compute_hello_sign_bytes(
                    self.chain_id, self.genesis_hash, peer_cert_hash, self.own_cert_hash), msg.signature):
                raise PeerViolation("Hello signature does not bind this TLS session")
        except (PeerViolation, CodecError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, PeerViolation | CodecError):
                self.violations += 1
                log.warning("refused connection: %s", exc)
            writer.close()
            return None
        old = self.peers.get(spec.address)
        if old is not None:
            old.close()
        peer = Peer(spec, writer, height=msg.height)
        self.peers[spec.address] = peer
        self._spawn(self._write_loop(peer))
        log.info("peer %s connected", spec.name)
        self.on_peer_up(peer)
        return peer

    async def _read_frame(self, reader: asyncio.StreamReader) -> Any:
        head = await reader.readexactly(4)
        (n,) = struct.unpack(">I", head)
        if n > MAX_FRAME_BYTES:
            raise PeerViolation(f"frame of {n} bytes is over the limit of {MAX_FRAME_BYTES}")
        return decode_message(await reader.readexactly(n))

    async def _serve(self, peer: Peer, reader: asyncio.StreamReader) -> None:
        """Read frames until the connection ends; hand each to the node."""
        try:
            while not peer.closed.is_set():
                msg = await self._read_frame(reader)
                res = self.on_message(peer, msg)
                if res is not None:
                    await res
        except (PeerViolation, CodecError, ValueError) as exc:
            self.violations += 1
            log.warning("disconnecting peer %s: %s", peer.spec.name, exc)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            peer.close()
            if self.peers.get(peer.spec.address) is peer:
                del self.peers[peer.spec.address]
                log.info("peer %s disconnected", peer.spec.name)

    async def _write_loop(self, peer: Peer) -> None:
        w = peer.writer
        try:
            while True:
                body = await peer.queue.get()
                if body is None:
                    break
                chunks = [struct.pack(">I", len(body)), body]
                while not peer.queue.empty() and len(chunks) < 512:
                    more = peer.queue.get_nowait()
                    if more is None:
                        peer.closed.set()
                        break
                    chunks += [struct.pack(">I", len(more)), more]
                w.writelines(chunks)
                await w.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            peer.close()
