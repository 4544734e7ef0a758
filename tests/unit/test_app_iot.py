"""The iot module on real blocks over a dict state (device registry, anchoring refusals), and gateway batches:
a Merkle path of one signed reading leads to the root, and a one-byte change breaks it."""

from __future__ import annotations

from typing import Any

import pytest

from qilian.apps.iot.module import IOT_NAMESPACE, compute_batch_key, get_device
from qilian.apps.iot.sdk import (
    ReadingInvalid,
    compute_leaf,
    is_valid_reading_signature,
    make_batch,
    sign_reading,
)
from qilian.crypto import get_suite, merkle
from qilian.execution.rules import TxRejected, check_tx_static
from qilian.sdk.client import build_tx

from .appchain import ADMIN, CHAIN, CLIENT, RULES, SUITE, AppChain, make_key
from .blockrunner import failed, ok

DEV = make_key("ed25519", 40)
SM2 = get_suite("sm2")
SM2_SK = SM2.private_key_from_seed(bytes([41]) * 32)




def reading(device: str, seq: int, t: int) -> dict[str, Any]:
    return {"device": device, "seq": seq, "t": t, "values": {"temp": "21.5", "rh": 40}}


def test_devices_register_retire_and_anchor_rules() -> None:
    s = AppChain()
    ok(s.one(ADMIN["farm"], "iot", "add_device", ["dev-1", "ed25519", DEV.public_key]))
    ok(s.one(ADMIN["farm"], "iot", "add_device", ["dev-sm2", "sm2", SM2.get_public_key(SM2_SK)]))
    ok(s.one(ADMIN["processor"], "iot", "add_device", ["dev-b", "ed25519", make_key("ed25519", 42).public_key]))
    failed(s.one(ADMIN["farm"], "iot", "add_device", ["dev-1", "ed25519", DEV.public_key]), "already registered")
    failed(s.one(ADMIN["farm"], "iot", "add_device", ["dev-2", "ed25519", b"\x01" * 31]), "not a valid ed25519")
    failed(s.one(ADMIN["farm"], "iot", "add_device", ["dev-2", "rsa", b"\x01" * 32]), "not one of")
    failed(s.one(CLIENT["farm"], "iot", "add_device", ["dev-3", "ed25519", make_key("ed25519", 43).public_key]),
           "policy iot.device")
    dev = get_device(s.get, "dev-1")
    assert dev is not None and dev["org"] == "farm" and dev["status"] == "active"

    now = 1_000_000 + 1_000 * (s.height + 1)
    root = bytes(32)
    failed(s.one(CLIENT["farm"], "iot", "anchor", [root, 10, ["dev-1", "dev-b"], now - 100, now, ""]),
           "dev-b' belongs to processor")
    failed(s.one(CLIENT["farm"], "iot", "anchor", [root, 10, ["dev-9"], now - 100, now + 1_000, ""]),
           "unknown device")
    failed(s.one(CLIENT["farm"], "iot", "anchor", [root, 10, ["dev-1"], now, now + 3_600_000, ""]),
           "after this block's time")
    res = ok(s.one(CLIENT["farm"], "iot", "anchor", [root, 10, ["dev-1", "dev-sm2"], now - 100, now, "hall 3"]))
    assert res["batch"] == 1 and s.record(IOT_NAMESPACE, compute_batch_key(1))["org"] == "farm"
    failed(s.one(ADMIN["processor"], "iot", "retire_device", ["dev-1"]), "belongs to farm")
    ok(s.one(ADMIN["farm"], "iot", "retire_device", ["dev-1"]))
    later = 1_000_000 + 1_000 * (s.height + 1)
    failed(s.one(CLIENT["farm"], "iot", "anchor", [root, 1, ["dev-1"], later - 10, later, ""]), "was retired")


@pytest.mark.parametrize(("args", "words"), [
    ([bytes(31), 1, ["d"], 0, 1, ""], "32-byte"),
    ([bytes(32), 0, ["d"], 0, 1, ""], "count of readings"),
    ([bytes(32), 1_000_001, ["d"], 0, 1, ""], "count of readings"),
    ([bytes(32), 1, ["b", "a"], 0, 1, ""], "sorted"),
    ([bytes(32), 1, ["a"], 0, 2 * 86_400_000, ""], "window end"),
    ([bytes(32), 1, ["a:1"], 0, 1, ""], "colons"),
])
def test_malformed_anchors_are_refused_at_admission(args: list[Any], words: str) -> None:
    tx = build_tx(CLIENT["farm"], CHAIN, "iot", "anchor", args, 10, nonce=1)
    with pytest.raises(TxRejected) as info:
        check_tx_static(RULES, tx, len(tx.encode()))
    assert words in info.value.message


def test_batch_merkle_path_and_signatures() -> None:
    signed = [(r, sign_reading("ed25519", DEV.private_key, r)) for r in (reading("dev-1", i, 1_000 + i)
                                                                      for i in range(1000))]
    r2 = reading("dev-sm2", 1, 1_500)
    signed.append((r2, sign_reading("sm2", SM2_SK, r2)))
    batch = make_batch(SUITE.hash, signed)
    assert batch.devices == ["dev-1", "dev-sm2"] and (batch.from_ms, batch.to_ms) == (1_000, 1_999)
    path = merkle.compute_proof(SUITE.hash, batch.leaves, 1000)
    assert merkle.is_valid_proof(SUITE.hash, batch.root, compute_leaf(r2, signed[1000][1]), path)
    assert is_valid_reading_signature("sm2", SM2.get_public_key(SM2_SK), r2, signed[1000][1])
    forged = {**r2, "values": {"temp": "21.6", "rh": 40}}
    assert not merkle.is_valid_proof(SUITE.hash, batch.root, compute_leaf(forged, signed[1000][1]), path)
    assert not is_valid_reading_signature("sm2", SM2.get_public_key(SM2_SK), forged, signed[1000][1])
    with pytest.raises(ReadingInvalid, match="twice"):
        make_batch(SUITE.hash, [signed[0], signed[0]])
    with pytest.raises(ReadingInvalid, match="no floats"):
        sign_reading("ed25519", DEV.private_key, {"device": "d", "seq": 1, "t": 1, "values": {"x": "1e5"}})
