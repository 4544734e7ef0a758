"""The IoT gateway's fast path (qilian.apps.iot.gateway): checking in worker processes refuses exactly the readings
the in-process check refuses — a forged signature in the middle of a big batch, a retired device, a key of another
organisation, a reading from outside any window the chain accepts, an unregistered device, a duplicate across
chunks, a malformed line — naming the first one in input order; and the root does not depend on the number of
processes or the chunk size (it is the root ``make_batch`` computes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from qilian.apps.iot import gateway as gw_module
from qilian.apps.iot.gateway import (
    CHUNK_READINGS,
    AnchorReceipt,
    CheckedBatch,
    CheckedChunk,
    Gateway,
    GatewayRefused,
    GatewayRules,
    Refusal,
    RegisteredDevice,
    compute_batch,
    compute_line_number,
    compute_worker_count,
    get_device_ids_in_text,
    get_signed_lines,
    process_anchor_batches,
)
from qilian.apps.iot.module import MAX_BATCH_DEVICES, MAX_CLOCK_SKEW_MS, MAX_WINDOW_MS
from qilian.apps.iot.sdk import compute_leaf, compute_leaf_from_encoded, make_batch, sign_reading
from qilian.crypto import get_suite, merkle
from qilian.types.codec import encode_trusted

ED = get_suite("ed25519")
SM2 = get_suite("sm2")
NOW = 1_800_000_000_000
RETIRED_MS = NOW - 30_000
KEYS = {f"dev-{c}": ED.private_key_from_seed(bytes([i + 1]) * 32) for i, c in enumerate("abcde")}
OLD_KEY = ED.private_key_from_seed(bytes([20]) * 32)
OTHER_KEY = ED.private_key_from_seed(bytes([21]) * 32)
SM2_KEY = SM2.private_key_from_seed(bytes([22]) * 32)
RULES = GatewayRules("farm", "ed25519", {
    **{d: RegisteredDevice("ed25519", ED.get_public_key(k), "farm", None) for d, k in KEYS.items()},
    "dev-sm2": RegisteredDevice("sm2", SM2.get_public_key(SM2_KEY), "farm", None),
    "dev-old": RegisteredDevice("ed25519", ED.get_public_key(OLD_KEY), "farm", RETIRED_MS),
    "dev-p": RegisteredDevice("ed25519", ED.get_public_key(OTHER_KEY), "processor", None),
    "dev-none": None,
}, NOW)
READINGS = 2000
CHUNK = 64
"""Small chunks so that 2,000 readings make 32 tasks spread over the workers."""
BAD_AT = 1234


def _reading(device: str, seq: int, t: int, temp: str = "21.5") -> dict[str, Any]:
    return {"device": device, "seq": seq, "t": t, "values": {"temp": temp, "rh": seq % 100}}


def _line(reading: dict[str, Any], signature: bytes) -> bytes:
    return json.dumps({"reading": reading, "sig": signature.hex()}, separators=(",", ":")).encode()


def _signed(reading: dict[str, Any], suite: str = "ed25519", key: bytes | None = None) -> tuple[dict[str, Any], bytes]:
    return reading, sign_reading(suite, KEYS[reading["device"]] if key is None else key, reading)


def _good() -> list[tuple[dict[str, Any], bytes]]:
    out = [_signed(_reading(f"dev-{'abcde'[i % 5]}", i // 5, NOW - 60_000 + i)) for i in range(READINGS)]
    for i in range(0, READINGS, 400):  # a few SM2 readings, and readings of the retired device from before
        out[i + 1] = _signed(_reading("dev-sm2", i, NOW - 59_000 + i), "sm2", SM2_KEY)
        out[i + 2] = _signed(_reading("dev-old", i, RETIRED_MS - 1), key=OLD_KEY)
    return out


GOOD = _good()
LINES = [_line(r, s) for r, s in GOOD]


@pytest.fixture(scope="module")
def pool() -> Iterator[Gateway]:
    with Gateway(2) as g:
        yield g


def _refusal(g: Gateway, lines: list[bytes], batch: int = READINGS, chunk: int = CHUNK) -> Refusal:
    with pytest.raises(GatewayRefused) as info:
        list(g.check_batches(RULES, lines, batch, chunk))
    return info.value.refusal


def _forged() -> bytes:
    r, s = GOOD[BAD_AT]
    return _line({**r, "values": {"temp": "99.9", "rh": 1}}, s)


BAD_LINES = {
    "forged": (_forged, "the signature is not by device dev-e's registered key (forged or altered)"),
    "retired": (lambda: _line(*_signed(_reading("dev-old", 9_999, RETIRED_MS), key=OLD_KEY)),
                f"device dev-old was retired at {RETIRED_MS} ms, before the reading ({RETIRED_MS} ms)"),
    "other org": (lambda: _line(*_signed(_reading("dev-p", 1, NOW - 1_000), key=OTHER_KEY)),
                  "key of another organisation: device dev-p is registered by processor, and this gateway anchors "
                  "for farm"),
    "future": (lambda: _line(*_signed(_reading("dev-a", 9_999, NOW + MAX_CLOCK_SKEW_MS + 1))),
               "outside the batch window: the reading is from"),
    "unregistered": (lambda: _line(*_signed(_reading("dev-none", 1, NOW), key=OTHER_KEY)),
                     "device dev-none is not registered"),
    "duplicate": (lambda: LINES[10], "reading dev-a:2 appears twice in the batch"),
    "malformed": (lambda: b'{"reading": 1}', 'each line is {"reading": {...}, "sig": hex}'),
    "not json": (lambda: b"{nope", "not JSON"),
    "float": (lambda: _line({**GOOD[BAD_AT][0], "t": 1.5}, GOOD[BAD_AT][1]), "t must be a non-negative integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_parallel_refuses_what_serial_refuses_naming_the_first_bad_reading(pool: Gateway, case: str) -> None:
    make_line, words = BAD_LINES[case]
    lines = list(LINES)
    lines[BAD_AT] = make_line()
    lines[1700] = _forged()  # a later bad reading, perhaps checked first by the other worker: not the one named
    with Gateway(0) as serial:
        expected = _refusal(serial, lines)
    got = _refusal(pool, lines)
    assert got == expected
    assert got.position == BAD_AT and words in got.describe(), got
    # the same refusal with the default chunk size (one chunk, so a duplicate is found in the worker)
    assert _refusal(pool, lines, READINGS, CHUNK_READINGS) == expected
    if case != "duplicate":  # duplicates are per batch; the first copy is in batch 1
        assert _refusal(pool, lines, 500) == expected  # batches of 500: the bad reading is in batch 3


def test_batch_checks_at_the_gateway_edge_cases(pool: Gateway) -> None:
    lines = list(LINES)
    lines[5] = _line(*_signed(_reading("dev-a", 10_000, NOW - 60_000 - MAX_WINDOW_MS - 1)))
    r = _refusal(pool, lines)
    assert r.position is None and "outside the batch window" in r.reason and "24 h" in r.reason
    lines = list(LINES)
    lines[77] = b"x" * (gw_module.MAX_LINE_BYTES + 1)
    assert "a line is at most" in _refusal(pool, lines).reason
    # a line whose "device" key is written with JSON escapes escapes the registry look-up: refused, saying so
    lines = [*LINES[:3], LINES[3].replace(b'"device"', b'"d\\u0065vice"')]
    looked_up = get_device_ids_in_text(b"\n".join(lines))
    assert looked_up == {"dev-a", "dev-sm2", "dev-old"}
    rules = GatewayRules("farm", "ed25519", {d: RULES.devices[d] for d in looked_up}, NOW)
    with pytest.raises(GatewayRefused) as info:
        list(pool.check_batches(rules, lines, 4, CHUNK))
    assert info.value.refusal.position == 3 and "dev-d was not looked up" in info.value.refusal.reason
    chunks = [CheckedChunk(0, 0, 1, bytes(32), "x:1", frozenset(f"d{i}" for i in range(MAX_BATCH_DEVICES + 1)),
                           0, 1, None, True, 0.0)]
    with pytest.raises(GatewayRefused, match="over the limit of 2000"):
        compute_batch(ED.hash, chunks, 0)


def test_roots_are_the_same_whatever_the_pool_and_chunk_size(pool: Gateway) -> None:
    expected = make_batch(ED.hash, GOOD)
    results: list[list[CheckedBatch]] = []
    with Gateway(0) as serial, Gateway(1) as one:
        for g, chunk in ((serial, CHUNK), (serial, 1), (serial, CHUNK_READINGS), (one, 128), (pool, CHUNK),
                         (pool, 256)):
            results.append(list(g.check_batches(RULES, LINES, READINGS, chunk)))
    for (b,) in results:
        assert (b.root, b.count, b.devices, b.from_ms, b.to_ms) == (expected.root, READINGS, expected.devices,
                                                                      expected.from_ms, expected.to_ms)
    # several batches: each the root make_batch gives for its slice, in order
    split = list(pool.check_batches(RULES, LINES, 700, CHUNK))
    assert [(b.index, b.first, b.count) for b in split] == [(0, 0, 700), (1, 700, 700), (2, 1400, 600)]
    for b in split:
        assert b.root == make_batch(ED.hash, GOOD[b.first:b.first + b.count]).root


def test_root_of_subtree_roots_is_the_root_of_the_tree() -> None:
    for n in (1, 2, 3, 5, 8, 9, 63, 64, 65, 100, 257):
        leaves = [bytes([i % 256, i // 256]) for i in range(n)]
        hashes = [ED.hash(b"\x00" + d) for d in leaves]
        for k in (1, 2, 4, 16, 64):
            roots = [merkle.compute_root_of_nodes(ED.hash, hashes[i:i + k]) for i in range(0, n, k)]
            assert merkle.compute_root_of_nodes(ED.hash, roots) == merkle.compute_root(ED.hash, leaves), (n, k)


def test_leaf_from_the_encoding_is_the_leaf() -> None:
    for reading, signature in (GOOD[0], GOOD[1], GOOD[2]):
        assert compute_leaf_from_encoded(encode_trusted(reading), signature) == compute_leaf(reading, signature)
    long_sig = bytes(300)  # a 2-byte length header
    assert compute_leaf_from_encoded(encode_trusted(GOOD[0][0]), long_sig) == compute_leaf(GOOD[0][0], long_sig)


def test_input_helpers() -> None:
    data = b"\n" + LINES[0] + b"\n\n  \n" + LINES[1] + b"\n" + LINES[3].replace(b'"dev-d"', b'"dev\\u002dd"')
    assert get_signed_lines(data)[1] == LINES[1] and len(get_signed_lines(data)) == 3
    assert [compute_line_number(data, i) for i in range(3)] == [2, 5, 6]
    assert get_device_ids_in_text(data) == {"dev-a", "dev-sm2", "dev-d"}
    assert compute_worker_count(100, None) == 0 and compute_worker_count(100, 3) == 3
    assert compute_worker_count(10**6, None) >= 1
    with pytest.raises(ValueError):
        compute_worker_count(10, gw_module.MAX_GATEWAY_WORKERS + 1)


def test_anchors_in_flight_and_a_refusal_after_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches before a refused one are anchored (and reported in order) before the refusal is raised."""
    anchored: list[int] = []

    def fake_anchor(node: str, key: Any, batch: CheckedBatch, meta: str) -> AnchorReceipt:
        return AnchorReceipt(batch, batch.index + 1, "00" * 32, 10 + batch.index, 100, 0.0)

    monkeypatch.setattr(gw_module, "process_anchor", fake_anchor)
    lines = list(LINES)
    lines[1500] = _forged()
    key: Any = None
    with Gateway(0) as serial, pytest.raises(GatewayRefused) as info:
        process_anchor_batches("http://unused", key, serial.check_batches(RULES, lines, 300, CHUNK), "m",
                               lambda r: anchored.append(r.number))
    assert anchored == [1, 2, 3, 4, 5] and info.value.refusal.position == 1500
