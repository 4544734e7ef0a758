"""The gateway's fast path (``qilian iot anchor`` and ``qilian bench iot``): check signed readings in parallel
processes, build each batch's Merkle root from per-chunk subtree roots, and anchor batches with several anchors in
flight while the next batch is being checked.

Why processes: per reading the gateway spends one signature check (libsodium Ed25519, 45–65 µs on this machine)
and about 10 µs of Python (JSON parse, form check, one encoding, the leaf hash). The Python part holds the GIL,
so threads would stop scaling after a few cores; processes scale with cores. A chunk crosses the process boundary
as one bytes blob of JSONL lines going in and, coming out, a 32-byte subtree root, the reading ids (for the
duplicate check across chunks) and the chunk's device set and time window, so the main process does well under a
microsecond per reading.

Why chunks of a power-of-two size: the root over consecutive subtrees of ``2**k`` leaves is the root of the whole
tree (:func:`qilian.crypto.merkle.compute_root_of_nodes`), so the workers hash leaves and interior nodes
themselves, and the root does not depend on how many workers there are.

One function, :func:`check_chunk`, checks a chunk in a worker and in-process (``workers=0``): the parallel path
refuses exactly what the serial one does, and names the first refused reading in input order.

Each reading is encoded once: the encoding is both the signed message (after the domain prefix) and the body of
the Merkle leaf (:func:`qilian.apps.iot.sdk.compute_leaf_from_encoded`)."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.pool import Pool
from types import TracebackType
from typing import Any, Final

from qilian.apps.iot.module import MAX_BATCH_DEVICES, MAX_BATCH_READINGS, MAX_CLOCK_SKEW_MS, MAX_WINDOW_MS, RETIRED
from qilian.apps.iot.sdk import DOMAIN_READING, ReadingInvalid, check_reading, compute_leaf_from_encoded
from qilian.crypto import get_suite, merkle
from qilian.sdk.client import DEFAULT_EXPIRY_BLOCKS, ApiFailure, Client, build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import encode_trusted, from_json_value, to_json_value

CHUNK_READINGS: Final = 8192
"""Readings one worker checks per task. A power of two (see the module docstring); large enough that a task's
fixed cost (pickling the device registry, about a millisecond) is a fraction of a percent of its ~0.5 s of work,
small enough that a 100,000-reading batch spreads over a dozen tasks."""
MAX_GATEWAY_WORKERS: Final = 64
"""Most checking processes one gateway starts."""
MAX_ANCHORS_IN_FLIGHT: Final = 4
"""Anchoring transactions submitted and not yet committed at once; the gateway stops taking checked batches past
this, so a slow chain holds back the gateway instead of piling up transactions."""
MAX_LINE_BYTES: Final = 16 * 1024
"""Longest JSONL line of one signed reading (a reading with 32 values of the longest names fits in a quarter)."""
ANCHOR_TIMEOUT_S: Final = 120.0
"""How long one anchor may take from submission to commit before the gateway gives up on it."""
AUTO_WORKERS_MIN_READINGS: Final = 2 * CHUNK_READINGS
"""Below this many readings ``workers=None`` checks in-process: starting processes (~0.5 s) costs more than it
saves."""

_decode_json: Final = json.JSONDecoder().decode
"""``json.loads`` less its per-call type dispatch and encoding detection (the lines are UTF-8 by JSONL's rule)."""
_DEVICE_FIELD: Final = re.compile(rb'"device"\s*:\s*"((?:[^"\\\n]|\\.)*)"')


@dataclass(frozen=True)
class RegisteredDevice:
    """A device as the gateway's registry snapshot knows it (from ``POST /iot/devices/lookup``)."""

    suite: str
    """Signature scheme of its key (sm2 or ed25519)."""
    public_key: bytes
    """The registered public key."""
    org: str
    """Organisation that registered it."""
    retired_ms: int | None
    """Block time of its retirement; None while active."""


@dataclass(frozen=True)
class GatewayRules:
    """What every reading is checked against; sent with each chunk to the workers (so it must pickle)."""

    org: str
    """The gateway key's organisation: it may anchor only its own organisation's devices."""
    hash_suite: str
    """The chain's suite, whose hash builds the Merkle tree."""
    devices: Mapping[str, RegisteredDevice | None]
    """Registry snapshot: device id → registration, None for an id looked up and found unregistered."""
    now_ms: int
    """The gateway's clock when the run started; a reading later than this plus MAX_CLOCK_SKEW_MS is refused."""


@dataclass(frozen=True)
class Refusal:
    """Why a batch is refused: the first bad reading in input order, or the batch as a whole."""

    position: int | None
    """0-based index of the reading among the input's non-blank lines; None for a refusal of the whole batch."""
    reading_id: str
    """``device:seq`` of the reading when it was parsed that far, else empty."""
    reason: str
    """What is wrong, in words."""

    def describe(self) -> str:
        """``reading ID: reason``, or the reason alone."""
        return f"reading {self.reading_id}: {self.reason}" if self.reading_id else self.reason


class GatewayRefused(Exception):
    """A batch the gateway will not anchor; ``refusal`` names the reading and the reason."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.describe())
        self.refusal = refusal


class AnchorFailed(Exception):
    """An anchoring transaction the node refused, failed or did not commit in time."""


class _ReadingRefused(Exception):
    """Internal: one reading failed a check (carries the reading id when known)."""

    def __init__(self, reading_id: str, reason: str):
        super().__init__(reason)
        self.reading_id = reading_id
        self.reason = reason


@dataclass(frozen=True)
class ChunkTask:
    """One worker task: consecutive lines of one batch."""

    rules: GatewayRules
    """The checks to apply."""
    batch_index: int
    """Which batch of the run (0-based)."""
    first: int
    """Position of the chunk's first line in the whole input."""
    lines: bytes
    """The chunk's non-blank lines joined by newlines."""
    is_last: bool
    """Whether this chunk ends its batch."""


@dataclass(frozen=True)
class CheckedChunk:
    """A worker's answer for one chunk."""

    batch_index: int
    """Which batch."""
    first: int
    """Position of the chunk's first line in the whole input."""
    count: int
    """Readings that passed, in order (all of them unless ``refusal``)."""
    root: bytes
    """Merkle root of the chunk's leaves (a complete subtree unless it is its batch's last chunk)."""
    reading_ids: str
    """The passed readings' ids joined by newlines (device ids are printable ASCII without spaces)."""
    devices: frozenset[str]
    """Distinct devices of the chunk."""
    from_ms: int
    """Earliest reading time."""
    to_ms: int
    """Latest reading time."""
    refusal: Refusal | None
    """The chunk's first refused reading, if any (checking stops there)."""
    is_last: bool
    """Whether this chunk ends its batch."""
    busy_s: float
    """CPU seconds the worker spent on the chunk (for the per-core rate; not wall time, which counts the time
    other processes held the core)."""


@dataclass(frozen=True)
class CheckedBatch:
    """A batch every reading of which passed the gateway's checks, ready to anchor."""

    index: int
    """Which batch of the run (0-based)."""
    first: int
    """Position of its first reading in the input."""
    count: int
    """Readings in the batch."""
    root: bytes
    """Merkle root over the leaves ``encode([reading, signature])`` (the chain suite's hash)."""
    devices: list[str]
    """Sorted distinct device ids."""
    from_ms: int
    """Earliest reading time."""
    to_ms: int
    """Latest reading time."""
    check_s: float
    """CPU seconds the workers spent checking it, summed over processes."""

    def to_anchor_args(self, meta: str = "") -> list[Any]:
        """Arguments of ``iot.anchor``."""
        return [self.root, self.count, self.devices, self.from_ms, self.to_ms, meta]


@dataclass(frozen=True)
class AnchorReceipt:
    """A committed anchor."""

    batch: CheckedBatch
    """What was anchored."""
    number: int
    """The chain's batch number."""
    tx_hash: str
    """The anchoring transaction."""
    height: int
    """Block that committed it."""
    tx_bytes: int
    """Size of the signed transaction."""
    latency_s: float
    """Seconds from building the transaction to its commit."""


def check_signed_line(rules: GatewayRules, hash_fn: Callable[[bytes], bytes], line: bytes
                      ) -> tuple[dict[str, Any], str, bytes]:
    """Check one signed-reading line as the gateway must — form, device registered, of the gateway's organisation,
    not retired at the reading's time, not from the future, signature by the registered key — and return the
    reading, its id and its Merkle leaf hash; raises _ReadingRefused naming the problem."""
    if len(line) > MAX_LINE_BYTES:
        raise _ReadingRefused("", f"a line is at most {MAX_LINE_BYTES} bytes, this one is {len(line)}")
    try:
        doc = _decode_json(line.decode())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise _ReadingRefused("", f"not JSON ({getattr(exc, 'msg', exc)})") from None
    if type(doc) is not dict or doc.keys() != {"reading", "sig"}:
        raise _ReadingRefused("", 'each line is {"reading": {...}, "sig": hex}')
    try:
        reading = check_reading(doc["reading"])
        signature = bytes.fromhex(doc["sig"])
    except (ReadingInvalid, ValueError, TypeError) as exc:
        raise _ReadingRefused("", str(exc)) from None
    device, t = reading["device"], reading["t"]
    rid = f"{device}:{reading['seq']}"
    if device not in rules.devices:
        raise _ReadingRefused(rid, f"device {device} was not looked up by the gateway (write the \"device\" field "
                                   f"of the line without JSON escapes)")
    reg = rules.devices[device]
    if reg is None:
        raise _ReadingRefused(rid, f"device {device} is not registered (qilian iot device add)")
    if reg.org != rules.org:
        raise _ReadingRefused(rid, f"key of another organisation: device {device} is registered by {reg.org}, "
                                   f"and this gateway anchors for {rules.org}")
    if reg.retired_ms is not None and t >= reg.retired_ms:
        raise _ReadingRefused(rid, f"device {device} was retired at {reg.retired_ms} ms, before the reading "
                                   f"({t} ms)")
    if t > rules.now_ms + MAX_CLOCK_SKEW_MS:
        raise _ReadingRefused(rid, f"outside the batch window: the reading is from {t} ms, more than "
                                   f"{MAX_CLOCK_SKEW_MS // 60_000} minutes after the gateway's clock "
                                   f"({rules.now_ms} ms), and the chain accepts no window ending that late")
    encoded = encode_trusted(reading)
    if not get_suite(reg.suite).verify(reg.public_key, DOMAIN_READING + encoded, signature):
        raise _ReadingRefused(rid, f"the signature is not by device {device}'s registered key (forged or altered)")
    return reading, rid, hash_fn(b"\x00" + compute_leaf_from_encoded(encoded, signature))


def check_chunk(task: ChunkTask) -> CheckedChunk:
    """Check a chunk's readings in order, stopping at the first refused one (a worker task, or run in-process).
    Besides the per-reading checks it refuses a reading id seen earlier in the chunk; the main process does the
    same across chunks."""
    started = time.process_time()
    rules = task.rules
    hash_fn = get_suite(rules.hash_suite).hash
    hashes: list[bytes] = []
    ids: list[str] = []
    seen: set[str] = set()
    devices: set[str] = set()
    lo, hi = 2**63, -1
    refusal = None
    for offset, line in enumerate(task.lines.split(b"\n")):
        try:
            reading, rid, leaf_hash = check_signed_line(rules, hash_fn, line)
            if rid in seen:
                raise _ReadingRefused(rid, f"reading {rid} appears twice in the batch")
        except _ReadingRefused as exc:
            refusal = Refusal(task.first + offset, exc.reading_id, exc.reason)
            break
        seen.add(rid)
        ids.append(rid)
        hashes.append(leaf_hash)
        devices.add(reading["device"])
        t = reading["t"]
        lo, hi = min(lo, t), max(hi, t)
    root = merkle.compute_root_of_nodes(hash_fn, hashes) if hashes and refusal is None else b""
    return CheckedChunk(task.batch_index, task.first, len(ids), root, "\n".join(ids), frozenset(devices), lo, hi,
                        refusal, task.is_last, time.process_time() - started)


def is_valid_chunk_size(chunk_readings: int) -> bool:
    """Whether chunks of this many readings keep the root independent of the chunking: a power of two."""
    return 1 <= chunk_readings <= MAX_BATCH_READINGS and chunk_readings & (chunk_readings - 1) == 0


def make_chunk_tasks(rules: GatewayRules, lines: Sequence[bytes], batch_size: int,
                     chunk_readings: int = CHUNK_READINGS) -> Iterator[ChunkTask]:
    """Tasks over consecutive batches of ``batch_size`` lines, each cut into chunks of ``chunk_readings`` (a power
    of two; tests use small ones to get many chunks out of few readings)."""
    if not is_valid_chunk_size(chunk_readings):
        raise ValueError(f"chunks hold a power of two of readings, not {chunk_readings}")
    for batch_index, start in enumerate(range(0, len(lines), batch_size)):
        end = min(start + batch_size, len(lines))
        for first in range(start, end, chunk_readings):
            last = min(first + chunk_readings, end)
            yield ChunkTask(rules, batch_index, first, b"\n".join(lines[first:last]), last == end)


def _find_repeat(seen: set[str], ids: list[str]) -> int | None:
    """Index of the first id already in ``seen``."""
    if seen.isdisjoint(ids):
        return None
    return next(i for i, rid in enumerate(ids) if rid in seen)


def compute_batch(hash_fn: Callable[[bytes], bytes], chunks: list[CheckedChunk], index: int) -> CheckedBatch:
    """Combine a batch's checked chunks (in order) and check what only the whole batch shows: its device count and
    the span of its time window."""
    devices = sorted(frozenset().union(*(c.devices for c in chunks)))
    from_ms, to_ms = min(c.from_ms for c in chunks), max(c.to_ms for c in chunks)
    if len(devices) > MAX_BATCH_DEVICES:
        raise GatewayRefused(Refusal(None, "", f"batch {index + 1} names {len(devices)} devices, over the limit of "
                                               f"{MAX_BATCH_DEVICES} per batch (use a smaller --batch)"))
    if to_ms - from_ms > MAX_WINDOW_MS:
        raise GatewayRefused(Refusal(None, "", f"outside the batch window: batch {index + 1}'s readings span "
                                               f"{from_ms}..{to_ms} ms, more than the {MAX_WINDOW_MS // 3_600_000} "
                                               f"h one batch may cover (use a smaller --batch)"))
    root = merkle.compute_root_of_nodes(hash_fn, [c.root for c in chunks])
    return CheckedBatch(index, chunks[0].first, sum(c.count for c in chunks), root, devices, from_ms, to_ms,
                        sum(c.busy_s for c in chunks))


def collect_batches(hash_fn: Callable[[bytes], bytes], results: Iterable[CheckedChunk]) -> Iterator[CheckedBatch]:
    """Checked batches from chunk results in input order; raises GatewayRefused at the first refused reading (the
    batches before it have been yielded)."""
    pending: list[CheckedChunk] = []
    seen: set[str] = set()
    for chunk in results:
        ids = chunk.reading_ids.split("\n") if chunk.count else []
        repeat = _find_repeat(seen, ids)
        if repeat is not None:
            rid = ids[repeat]
            raise GatewayRefused(Refusal(chunk.first + repeat, rid, f"reading {rid} appears twice in the batch"))
        if chunk.refusal is not None:
            raise GatewayRefused(chunk.refusal)
        seen.update(ids)
        pending.append(chunk)
        if chunk.is_last:
            yield compute_batch(hash_fn, pending, chunk.batch_index)
            pending, seen = [], set()


def _is_ready(_: int) -> bool:
    """A no-op task: returns once a worker has started and imported this module."""
    return True


def compute_worker_count(readings: int, requested: int | None) -> int:
    """Processes to check ``readings`` with: ``requested`` if given, else one per usable core, none (in-process)
    for fewer than AUTO_WORKERS_MIN_READINGS, and never more than there are chunks."""
    if requested is not None:
        if not 0 <= requested <= MAX_GATEWAY_WORKERS:
            raise ValueError(f"workers must be 0..{MAX_GATEWAY_WORKERS}, got {requested}")
        return requested
    if readings < AUTO_WORKERS_MIN_READINGS:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, MAX_GATEWAY_WORKERS, -(-readings // CHUNK_READINGS)))


class Gateway:
    """Checks batches of signed readings in ``workers`` processes (0: in the calling process). Use as a context
    manager: the processes start (and have imported the checker) when it is entered and stop when it is left.

    Processes are started with ``spawn``: they hold no copy of the caller's memory or threads, whatever the
    caller holds when it starts them."""

    def __init__(self, workers: int):
        if not 0 <= workers <= MAX_GATEWAY_WORKERS:
            raise ValueError(f"workers must be 0..{MAX_GATEWAY_WORKERS}, got {workers}")
        self.workers = workers
        self._pool: Pool | None = None

    def __enter__(self) -> Gateway:
        if self.workers:
            self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
            self._pool.map(_is_ready, range(2 * self.workers), chunksize=1)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.terminate()  # on a refusal, queued chunks are of no use
            self._pool.join()
            self._pool = None

    def check_batches(self, rules: GatewayRules, lines: Sequence[bytes], batch_size: int,
                      chunk_readings: int = CHUNK_READINGS) -> Iterator[CheckedBatch]:
        """Check ``lines`` (non-blank JSONL lines of signed readings) as consecutive batches of ``batch_size``;
        yields each batch as soon as all its chunks are checked, while the workers go on with the next ones."""
        if not 1 <= batch_size <= MAX_BATCH_READINGS:
            raise ValueError(f"a batch holds 1..{MAX_BATCH_READINGS} readings, not {batch_size}")
        if not is_valid_chunk_size(chunk_readings):
            raise ValueError(f"chunks hold a power of two of readings, not {chunk_readings}")
        if self.workers and self._pool is None:
            raise RuntimeError("enter the Gateway (with …) before checking")
        tasks = make_chunk_tasks(rules, lines, batch_size, chunk_readings)
        results = self._pool.imap(check_chunk, tasks) if self._pool is not None else map(check_chunk, tasks)
        return collect_batches(get_suite(rules.hash_suite).hash, results)


def get_signed_lines(data: bytes) -> list[bytes]:
    """The non-blank lines of a JSONL input, in order."""
    return [line for line in data.split(b"\n") if line.strip()]


def compute_line_number(data: bytes, position: int) -> int:
    """1-based line number in ``data`` of the non-blank line at ``position`` (for error messages)."""
    seen = -1
    for number, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            seen += 1
            if seen == position:
                return number
    raise IndexError(f"no non-blank line at position {position}")


def get_device_ids_in_text(data: bytes) -> set[str]:
    """Every string that follows a ``"device":`` key in a JSONL input: a superset of its readings' device ids
    (a value named "device" adds one more), found without parsing the lines so the registry can be fetched before
    the workers start. A line whose ``device`` key itself is written with JSON escapes is missed; the checker then
    refuses its reading, saying so."""
    found: set[str] = set()
    for raw in set(_DEVICE_FIELD.findall(data)):
        try:
            value = json.loads(b'"' + raw + b'"')
        except ValueError:
            continue
        if type(value) is str:
            found.add(value)
    return found


def get_registry(client: Client, device_ids: Iterable[str]) -> dict[str, RegisteredDevice | None]:
    """Registrations of ``device_ids`` from the node's latest state (None: not registered)."""
    ids = sorted(set(device_ids))
    out: dict[str, RegisteredDevice | None] = {}
    for i in range(0, len(ids), MAX_BATCH_DEVICES):
        answer = client._json(client.http.post("/iot/devices/lookup", json=ids[i:i + MAX_BATCH_DEVICES]))
        for device_id, doc in answer.items():
            if doc is None:
                out[device_id] = None
                continue
            rec = from_json_value(doc)
            out[device_id] = RegisteredDevice(rec["suite"], rec["public_key"], rec["org"],
                                              rec["retired_ms"] if rec["status"] == RETIRED else None)
    return out


def get_gateway_org(client: Client, public_key: bytes) -> str | None:
    """The organisation of the gateway's key, or None when it is not (or no longer) a member."""
    doc = client._json(client.http.get(f"/gov/members/{public_key.hex()}"))
    if "revoked_at" in doc or not doc.get("org"):
        return None
    return str(doc["org"])


def process_anchor(node: str, key: KeyPair, batch: CheckedBatch, meta: str) -> AnchorReceipt:
    """Pre-check ``iot.anchor`` on the node, submit it and wait for its commit (one HTTP client per call, so
    several can run in threads)."""
    import httpx

    started = time.perf_counter()
    args = batch.to_anchor_args(meta)
    try:
        with Client(node) as c:
            c._json(c.http.post("/iot/check", json={"method": "anchor", "args": to_json_value(args),
                                                    "sender": key.public_key.hex()}))
            status = c.get_status()
            tx = build_tx(key, status["chain_id"], "iot", "anchor", args, status["height"] + DEFAULT_EXPIRY_BLOCKS)
            res = c.submit(tx, wait="commit", timeout=ANCHOR_TIMEOUT_S)
    except ApiFailure as exc:
        raise AnchorFailed(f"batch {batch.index + 1}: the node refused the anchor: {exc.code}: {exc.message}"
                           ) from None
    except (OSError, httpx.HTTPError) as exc:
        raise AnchorFailed(f"batch {batch.index + 1}: cannot reach {node}: {exc}") from None
    if res.get("status") != "committed":
        raise AnchorFailed(f"batch {batch.index + 1}: not committed within {ANCHOR_TIMEOUT_S:.0f} s "
                           f"({res.get('status')}); check later with: qilian tx get {res.get('hash')}")
    receipt = res.get("receipt") or {}
    if receipt.get("status") != "ok":
        raise AnchorFailed(f"batch {batch.index + 1}: the anchor failed: {receipt.get('error')}")
    return AnchorReceipt(batch, int(receipt["result"]["batch"]), str(res["hash"]), int(res["height"]),
                         len(tx.encode()), time.perf_counter() - started)


def process_anchor_batches(node: str, key: KeyPair, batches: Iterator[CheckedBatch], meta: str,
                           on_anchored: Callable[[AnchorReceipt], None]) -> list[AnchorReceipt]:
    """Anchor checked batches as they come, up to MAX_ANCHORS_IN_FLIGHT at once, reporting each commit to
    ``on_anchored`` in batch order. A refusal (GatewayRefused) or a failed anchor (AnchorFailed) is raised after
    the anchors already in flight have finished, so ``on_anchored`` has seen everything that was anchored."""
    done: list[AnchorReceipt] = []
    inflight: deque[Future[AnchorReceipt]] = deque()
    failure: Exception | None = None

    def finish_oldest() -> None:
        nonlocal failure
        try:
            receipt = inflight.popleft().result()
        except AnchorFailed as exc:
            failure = failure or exc
            return
        done.append(receipt)
        on_anchored(receipt)

    with ThreadPoolExecutor(MAX_ANCHORS_IN_FLIGHT, thread_name_prefix="iot-anchor") as executor:
        try:
            for batch in batches:
                while len(inflight) >= MAX_ANCHORS_IN_FLIGHT:
                    finish_oldest()
                if failure is not None:
                    break
                inflight.append(executor.submit(process_anchor, node, key, batch, meta))
                while inflight and inflight[0].done():
                    finish_oldest()
        except GatewayRefused as exc:
            failure = exc
        while inflight:
            finish_oldest()
    if failure is not None:
        raise failure
    return done


__all__ = ["ANCHOR_TIMEOUT_S", "CHUNK_READINGS", "MAX_ANCHORS_IN_FLIGHT", "MAX_GATEWAY_WORKERS", "MAX_LINE_BYTES",
           "AnchorFailed", "AnchorReceipt", "CheckedBatch", "CheckedChunk", "ChunkTask", "Gateway", "GatewayRefused",
           "GatewayRules", "Refusal", "RegisteredDevice", "check_chunk", "check_signed_line", "collect_batches",
           "compute_batch", "compute_line_number", "compute_worker_count", "get_device_ids_in_text",
           "get_gateway_org", "get_registry", "get_signed_lines", "is_valid_chunk_size", "make_chunk_tasks",
           "process_anchor", "process_anchor_batches"]
