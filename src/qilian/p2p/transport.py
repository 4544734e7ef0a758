"""Authenticated, encrypted connections to the other nodes of the network, admitted by chain state.

TLS 1.3 encrypts every link and authenticates the accepting side's TLS key; *who* a peer is comes from its node
key. Each side sends a Hello (chain, genesis, node key, height, a fresh nonce), then a HelloProof: its node key's
signature over the accepting side's certificate hash, its side and both nonces (:func:`compute_hello_sign_bytes`),
so a relay in the middle (which must present its own certificate) or a replayed proof is refused. A peer is
**admitted** only if its node key is a node registered in chain state at this node's height (``admit``; see
:mod:`qilian.execution.nodes`) — never because of a configuration file or a certificate bundle — and it is
dropped when governance removes it (:meth:`Transport.process_admission`).

Where to dial comes from chain state too (registered endpoints, :meth:`Transport.set_targets`), plus the node's
configured address book and seed addresses (a joining node needs only the genesis and one seed). Both sides of a
pair may dial; when two connections between one pair are up, both keep the one dialed by the smaller address.
Every frame is length-prefixed and bounded; a peer that sends a frame that is too large, not canonical or invalid
is disconnected — the node carries on with the others and the dialer retries later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qilian.crypto.suite import Suite
from qilian.p2p.messages import (
    HELLO_NONCE_BYTES,
    MAX_FRAME_BYTES,
    Hello,
    HelloProof,
    PeerViolation,
    compute_hello_sign_bytes,
    decode_message,
    encode_message,
)
from qilian.p2p.tls import create_tls_identity, get_cert_hash, get_own_cert_der, make_context
from qilian.types.codec import CodecError
from qilian.types.struct import Wire

log = logging.getLogger("qilian.p2p")

HANDSHAKE_TIMEOUT_S = 5.0
"""TLS handshake plus Hello and HelloProof must finish within this time."""
MAX_QUEUED_FRAMES = 20_000
"""Frames waiting to be written to one peer; a peer that falls this far behind is disconnected."""
REDIAL_MIN_S = 0.2
"""First wait before re-dialing a lost peer."""
REDIAL_MAX_S = 2.0
"""Longest wait between dial attempts (the wait doubles up to this)."""
MAX_HANDSHAKES = 64
"""Inbound connections in their handshake at once. Any TLS client can reach the Hello now that admission is by
node key rather than certificate bundle; past this many, new connections are closed at once."""
MAX_SEEDS = 16
"""Most seed addresses a node dials."""

Admit = Callable[[bytes], str | None]
"""Node key → its label (``org/name``) if chain state at this node's height registers it as a node, else None."""


@dataclass(frozen=True)
class PeerSpec:
    """A node of the network: from chain state (registered node and endpoint) or the node's address book."""

    name: str
    """Its name (for logs)."""
    public_key: bytes
    """Its node key."""
    address: bytes
    """Address of its node key."""
    host: str
    """Host its P2P listener is reachable at (empty: not known, it dials us)."""
    port: int
    """Its P2P port (0: not known)."""


@dataclass(eq=False)
class Peer:
    """A live, authenticated connection."""

    spec: PeerSpec
    writer: asyncio.StreamWriter
    dialer: bytes = b""
    """Address of the side that dialed this connection (the tie-break between two connections of one pair)."""
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


class _Refused(Exception):
    """A well-behaved peer this node does not admit (not a registered node, blocked): closed, not a violation."""


class Transport:
    """Listens, dials and keeps one authenticated connection to every admitted node it can reach."""

    def __init__(self, *, suite: Suite, private_key: bytes, public_key: bytes, chain_id: str, genesis_hash: bytes,
                 listen_host: str, listen_port: int, tls_dir: Path, on_message: OnMessage,
                 on_peer_up: Callable[[Peer], None], get_height: Callable[[], int], admit: Admit,
                 peers: list[PeerSpec] | None = None, seeds: tuple[tuple[str, int], ...] = (),
                 blocked: frozenset[str] = frozenset()):
        self.suite = suite
        self.private_key = private_key
        self.public_key = public_key
        self.address = suite.compute_address(public_key)
        self.chain_id = chain_id
        self.genesis_hash = genesis_hash
        self.admit = admit
        self.blocked = blocked
        """Names (address-book names or ``org/name`` labels) this node neither dials nor accepts (``[p2p]
        blocked_peers``: an operator's deny-list; fault tests cut single links with it)."""
        self.book = {p.public_key: p for p in peers or () if p.public_key != public_key}
        """The configured address book (``[[peers]]``): where to dial keys chain state has no endpoint for."""
        self._blocked_keys = {p.public_key for p in self.book.values() if p.name in blocked}
        self.seeds = tuple(seeds[:MAX_SEEDS])
        """Seed addresses, dialed whatever key answers there (admitted by chain state like anyone)."""
        self.targets: dict[bytes, PeerSpec] = {}
        """Node key → where to dial it: registered endpoints (chain state) over the address book."""
        self.listen_host = listen_host
        self.listen_port = listen_port
        crt, key = tls_dir / "node.crt", tls_dir / "node.key"
        if not crt.exists() or not key.exists():
            create_tls_identity(tls_dir, suite.compute_address(public_key).hex()[:16])
        self.server_ctx = make_context(True, crt, key)
        self.client_ctx = make_context(False, crt, key)
        self.own_cert_hash = get_cert_hash(get_own_cert_der(crt))
        self.on_message = on_message
        self.on_peer_up = on_peer_up
        self.get_height = get_height
        self.peers: dict[bytes, Peer] = {}
        """Connected peers by address."""
        self.violations = 0
        """Connections closed for protocol violations (exposed in /status)."""
        self.refused = 0
        """Handshakes refused because chain state does not register the peer's key as a node (or it is
        blocked), and connections dropped when governance removed the peer (exposed in /status)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dialers: dict[bytes, asyncio.Task[Any]] = {}
        self._handshaking = 0
        self._stopping = False
        self._started = False
        self.set_targets([])

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_inbound, self.listen_host, self.listen_port,
                                                  ssl=self.server_ctx, ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
                                                  limit=MAX_FRAME_BYTES + 8)
        self._started = True
        self._process_dialers()
        for host, port in self.seeds:
            self._spawn(self._seed_loop(host, port))

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

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # -- admission ---------------------------------------------------------------------------------------

    def set_targets(self, registered: list[PeerSpec]) -> None:
        """The nodes chain state registers with an endpoint (at this node's height): dial them; keys of the
        address book that are registered are dialed at the book's address when chain state names none."""
        targets = {p.public_key: p for p in self.book.values() if p.host and p.port}
        for p in registered:
            if p.public_key != self.public_key and p.host and p.port:
                targets[p.public_key] = p
        self.targets = {k: p for k, p in targets.items() if not self._is_blocked(k, p.name)}
        if self._started:
            self._process_dialers()

    def process_admission(self) -> int:
        """Close every connection whose key chain state no longer admits (governance removed it); how many."""
        dropped = 0
        for p in list(self.peers.values()):
            if self.admit(p.spec.public_key) is None:
                log.info("peer %s is no longer a registered node; disconnecting it", p.spec.name)
                p.close()
                dropped += 1
        self.refused += dropped
        return dropped

    def _is_blocked(self, public_key: bytes, label: str) -> bool:
        return public_key in self._blocked_keys or label in self.blocked

    def _process_dialers(self) -> None:
        for key, task in list(self._dialers.items()):
            if key not in self.targets:
                task.cancel()
                del self._dialers[key]
        for key in self.targets:
            if key not in self._dialers and not self._stopping:
                self._dialers[key] = self._spawn(self._dial_loop(key))

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

    async def _dial_loop(self, key: bytes) -> None:
        """Keep a connection to one target: wait while one is up (either direction), redial when it ends."""
        wait = REDIAL_MIN_S
        while not self._stopping and key in self.targets:
            spec = self.targets[key]
            up = self.peers.get(spec.address)
            if up is not None:
                await up.closed.wait()
                continue
            if not await self._dial(spec.host, spec.port, key):
                await asyncio.sleep(wait)
                wait = min(wait * 2, REDIAL_MAX_S)
            else:
                wait = REDIAL_MIN_S

    async def _seed_loop(self, host: str, port: int) -> None:
        """Keep a connection to a seed address until chain state names the key answering there as a target
        (its own dial loop then takes over)."""
        wait = REDIAL_MIN_S
        known: bytes | None = None
        while not self._stopping:
            if known is not None:
                if known in self.targets:
                    return
                up = self.peers.get(self.suite.compute_address(known))
                if up is not None:
                    await up.closed.wait()
                    continue
            got = await self._dial(host, port, None)
            if got:
                known = got
                wait = REDIAL_MIN_S
            else:
                await asyncio.sleep(wait)
                wait = min(wait * 2, REDIAL_MAX_S)

    async def _dial(self, host: str, port: int, expected: bytes | None) -> bytes | None:
        """One dial: connect, handshake, serve until the connection ends. The peer's key if it was admitted."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.client_ctx, server_hostname=None,
                                        ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S, limit=MAX_FRAME_BYTES + 8),
                HANDSHAKE_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", host, port, exc)
            return None
        peer = await self._handshake(reader, writer, True, expected)
        if peer is None or isinstance(peer, bytes):
            return peer  # refused, or a duplicate of a live connection to this key
        await self._serve(peer, reader)
        return peer.spec.public_key

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._handshaking >= MAX_HANDSHAKES:
            writer.close()
            return
        with contextlib.suppress(asyncio.CancelledError):
            self._handshaking += 1
            try:
                peer = await self._handshake(reader, writer, False, None)
            finally:
                self._handshaking -= 1
            if isinstance(peer, Peer):
                await self._serve(peer, reader)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialer: bool,
                         expected: bytes | None) -> Peer | bytes | None:
        """Hello and HelloProof both ways; the authenticated, admitted peer, or None (connection closed), or the
        peer's key when this connection duplicates a live one that both sides keep instead (closed too)."""
        if dialer:
            ssl_obj = writer.get_extra_info("ssl_object")
            der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
            if not der:
                writer.close()
                return None
            server_cert = get_cert_hash(der)
        else:
            server_cert = self.own_cert_hash
        nonce = os.urandom(HELLO_NONCE_BYTES)
        try:
            self._write_now(writer, Hello(self.chain_id, self.genesis_hash, self.public_key, self.get_height(),
                                          nonce))
            msg = await asyncio.wait_for(self._read_frame(reader), HANDSHAKE_TIMEOUT_S)
            if not isinstance(msg, Hello):
                raise PeerViolation("first message is not a Hello")
            if msg.chain_id != self.chain_id or msg.genesis_hash != self.genesis_hash:
                raise PeerViolation(f"peer is on chain {msg.chain_id!r} with another genesis")
            if msg.public_key == self.public_key:
                raise _Refused("a connection to this node itself")
            if expected is not None and msg.public_key != expected:
                raise _Refused("another node key answers at this target's endpoint")
            label = self.admit(msg.public_key)
            if label is None:
                raise _Refused(f"node key {msg.public_key.hex()[:16]}… is not a registered node at height "
                               f"{self.get_height()}")
            spec = self.targets.get(msg.public_key) or self.book.get(msg.public_key)
            name = spec.name if spec is not None else label
            if self._is_blocked(msg.public_key, label):
                raise _Refused(f"peer {name} is blocked")
            self._write_now(writer, HelloProof(self.suite.sign(self.private_key, compute_hello_sign_bytes(
                self.chain_id, self.genesis_hash, server_cert, dialer, nonce, msg.nonce))))
            proof = await asyncio.wait_for(self._read_frame(reader), HANDSHAKE_TIMEOUT_S)
            if not isinstance(proof, HelloProof):
                raise PeerViolation("second message is not a HelloProof")
            if not self.suite.verify(msg.public_key, compute_hello_sign_bytes(
                    self.chain_id, self.genesis_hash, server_cert, not dialer, msg.nonce, nonce), proof.signature):
                raise PeerViolation("HelloProof does not bind this TLS session")
        except _Refused as exc:
            self.refused += 1
            log.info("refused connection: %s", exc)
            writer.close()
            return None
        except (PeerViolation, CodecError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, PeerViolation | CodecError):
                self.violations += 1
                log.warning("refused connection: %s", exc)
            writer.close()
            return None
        address = self.suite.compute_address(msg.public_key)
        if spec is None or spec.name != name:
            spec = PeerSpec(name, msg.public_key, address, "", 0)
        dialed_by = self.address if dialer else address
        old = self.peers.get(address)
        if old is not None and not old.closed.is_set():
            if old.dialer != dialed_by and old.dialer == min(self.address, address):
                writer.close()  # both sides keep the connection the smaller address dialed
                return msg.public_key
            old.close()
        peer = Peer(spec, writer, dialed_by, height=msg.height)
        self.peers[address] = peer
        self._spawn(self._write_loop(peer))
        log.info("peer %s connected", spec.name)
        self.on_peer_up(peer)
        return peer

    @staticmethod
    def _write_now(writer: asyncio.StreamWriter, msg: Wire) -> None:
        body = encode_message(msg)
        writer.write(struct.pack(">I", len(body)) + body)

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
