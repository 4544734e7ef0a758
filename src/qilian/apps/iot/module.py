"""The ``iot`` module: device registry and anchoring of reading batches (物联网 data attestation).

Devices sign their readings off-chain; a gateway collects them, builds a Merkle tree over the signed readings and
anchors only the root with the batch's metadata — device set, time window, count — in one transaction. A single
reading is later proven offline by its signature, its Merkle path, the anchoring transaction's proofs and the
device's registration (qilian.apps.iot.sdk). The chain stores what the proof needs to trust: which organisation
registered which device key, and when a device was retired.

State (namespace ``app:iot``): ``d`` ‖ device id → device record; ``b`` ‖ n (8 bytes) → batch n; ``B`` → batch
count. Pure code: deterministic, no IO, no time (the block time comes in), no floats."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Final

from qilian.apps.base import MAX_TEXT, get_int, get_record, get_text, process_put_record
from qilian.crypto import get_suite
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.core import Event, Transaction

IOT_MODULE: Final = "iot"
IOT_NAMESPACE: Final = "app:iot"
DEVICE_SUITES: Final = ("sm2", "ed25519")
"""Signature schemes a device key may use, whatever the chain's own suite."""
MAX_DEVICE_ID: Final = 64
"""Longest device identifier (characters)."""
MAX_BATCH_READINGS: Final = 1_000_000
"""Most readings one anchored batch covers (a Merkle proof of one is then 20 hashes)."""
MAX_BATCH_DEVICES: Final = 2_000
"""Most devices one batch names (the transaction's 64 KiB limit binds too)."""
MAX_WINDOW_MS: Final = 24 * 3600 * 1000
"""Longest time window of one batch."""
MAX_CLOCK_SKEW_MS: Final = 5 * 60 * 1000
"""How far a batch window may end after the anchoring block's time (gateway clocks drift)."""
MAX_META: Final = 1024
"""Longest free-text batch metadata."""

_DEVICE_ID_CHARS: Final = re.compile(r"[!-9;-~]*")
"""Printable ASCII (0x21..0x7E) less the colon (0x3A): one C-speed match instead of a Python loop per character,
since the gateway checks a device id for every reading."""

RESOURCES: Final = {"add_device": "iot.device", "retire_device": "iot.device", "anchor": "iot.anchor"}
ACTIVE: Final = "active"
RETIRED: Final = "retired"


def compute_device_key(device_id: str) -> bytes:
    return b"d" + device_id.encode()


def compute_batch_key(number: int) -> bytes:
    return b"b" + number.to_bytes(8, "big")


BATCH_COUNT_KEY: Final = b"B"


def get_device(get: Any, device_id: str) -> dict[str, Any] | None:
    """A device's record: ``org``, ``suite``, ``public_key``, ``status``, ``registered``/``registered_ms`` and
    ``retired``/``retired_ms`` (height and block time; 0 while active)."""
    return get_record(get, IOT_NAMESPACE, compute_device_key(device_id))


def get_batch(get: Any, number: int) -> dict[str, Any] | None:
    """An anchored batch's record."""
    return get_record(get, IOT_NAMESPACE, compute_batch_key(number))


def get_device_id(value: Any) -> str:
    """A device identifier: 1..MAX_DEVICE_ID printable ASCII characters without spaces or colons (a reading ID
    is ``device:seq``)."""
    text = get_text(value, "device id", MAX_DEVICE_ID)
    if not _DEVICE_ID_CHARS.fullmatch(text):
        raise CallFailed(f"device id {quote(text)} must be printable ASCII without spaces or colons")
    return text


def check_anchor_args(args: tuple[Any, ...]) -> tuple[bytes, int, list[str], int, int, str]:
    """Static checks of ``anchor(root, count, devices, from_ms, to_ms, meta)``."""
    root, count, devices, from_ms, to_ms, meta = args
    if type(root) is not bytes or len(root) != 32:
        raise CallFailed("root must be the 32-byte Merkle root of the batch")
    get_int(count, "count of readings", 1, MAX_BATCH_READINGS)
    if type(devices) is not list or not devices:
        raise CallFailed("devices must be a non-empty list of device ids")
    if len(devices) > MAX_BATCH_DEVICES:
        raise CallFailed(f"batch names {len(devices)} devices, over the limit of {MAX_BATCH_DEVICES}")
    ids = [get_device_id(d) for d in devices]
    if ids != sorted(set(ids)):
        raise CallFailed("devices must be sorted and distinct")
    get_int(from_ms, "window start (ms)", 0, 2**63 - 1)
    get_int(to_ms, "window end (ms)", from_ms, from_ms + MAX_WINDOW_MS)
    get_text(meta, "meta", MAX_META, empty=True)
    return root, count, ids, from_ms, to_ms, meta


class IotModule(Module):
    """Device registry and batch anchoring; see the module docstring."""

    name = IOT_MODULE
    version = 1
    methods: ClassVar = RESOURCES
    arity: ClassVar = {"add_device": (3,), "retire_device": (1,), "anchor": (6,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        method, args = tx.body.method, tx.body.args
        if len(args) not in self.arity[method]:
            raise TxRejected("bad_args", f"iot.{method} takes {self.arity[method][0]} argument(s), got {len(args)}")
        try:
            if method == "anchor":
                check_anchor_args(args)
            else:
                get_device_id(args[0])
        except CallFailed as exc:
            raise TxRejected("bad_args", f"iot.{method}: {exc}") from None

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        method, args = call.method, call.args
        if method not in RESOURCES:
            raise CallFailed(f"iot has no method {quote(method)}")
        if len(args) not in self.arity[method]:
            raise CallFailed(f"iot.{method} takes {self.arity[method][0]} argument(s), got {len(args)}")
        env.process_require(RESOURCES[method], (call.member.to_approver(),))
        org = call.member.organisation
        get = env.state.get
        if method == "add_device":
            device_id = get_device_id(args[0])
            suite_name, public_key = args[1], args[2]
            if suite_name not in DEVICE_SUITES:
                raise CallFailed(f"device suite {quote(suite_name)} is not one of {', '.join(DEVICE_SUITES)}")
            if type(public_key) is not bytes or not get_suite(suite_name).is_valid_public_key(public_key):
                raise CallFailed(f"public key is not a valid {suite_name} public key")
            old = get_device(get, device_id)
            if old is not None:
                raise CallFailed(f"device {quote(device_id)} is already registered (by {old['org']} at height "
                                 f"{old['registered']}); device ids are never reused")
            new = {"org": org, "suite": suite_name, "public_key": public_key, "status": ACTIVE,
                   "registered": env.height, "registered_ms": env.time_ms, "retired": 0, "retired_ms": 0}
            process_put_record(env.state, IOT_NAMESPACE, compute_device_key(device_id), new)
            return Outcome({"device": device_id}, (Event(IOT_MODULE, "device_added", {"device": device_id}),))
        if method == "retire_device":
            device_id = get_device_id(args[0])
            rec = get_device(get, device_id)
            if rec is None:
                raise CallFailed(f"unknown device {quote(device_id)}")
            if rec["org"] != org:
                raise CallFailed(f"device {quote(device_id)} belongs to {rec['org']}; {org} may not retire it")
            if rec["status"] == RETIRED:
                raise CallFailed(f"device {quote(device_id)} was already retired at height {rec['retired']}")
            rec.update(status=RETIRED, retired=env.height, retired_ms=env.time_ms)
            process_put_record(env.state, IOT_NAMESPACE, compute_device_key(device_id), rec)
            return Outcome({"device": device_id, "retired_ms": env.time_ms},
                           (Event(IOT_MODULE, "device_retired", {"device": device_id}),))
        root, count, devices, from_ms, to_ms, meta = check_anchor_args(args)
        if to_ms > env.time_ms + MAX_CLOCK_SKEW_MS:
            raise CallFailed(f"the batch window ends at {to_ms} ms, after this block's time {env.time_ms} ms "
                             f"(+{MAX_CLOCK_SKEW_MS} ms skew allowed)")
        for device_id in devices:
            dev = get_device(get, device_id)
            if dev is None:
                raise CallFailed(f"unknown device {quote(device_id)}: register it first (qilian iot device add)")
            if dev["org"] != org:
                raise CallFailed(f"device {quote(device_id)} belongs to {dev['org']}: a gateway of {org} may "
                                 f"anchor only its own organisation's devices")
            if dev["status"] == RETIRED and dev["retired_ms"] <= from_ms:
                raise CallFailed(f"device {quote(device_id)} was retired at height {dev['retired']} "
                                 f"({dev['retired_ms']} ms), before this batch's window")
        number = int.from_bytes(get(IOT_NAMESPACE, BATCH_COUNT_KEY) or b"\x00", "big") + 1
        env.state.put(IOT_NAMESPACE, BATCH_COUNT_KEY, number.to_bytes(8, "big"))
        batch = {"org": org, "gateway": call.sender, "root": root, "count": count, "devices": devices,
                 "from_ms": from_ms, "to_ms": to_ms, "meta": meta, "height": env.height, "time_ms": env.time_ms,
                 "tx_hash": call.tx_hash}
        process_put_record(env.state, IOT_NAMESPACE, compute_batch_key(number), batch)
        return Outcome({"batch": number, "root": root, "count": count},
                       (Event(IOT_MODULE, "anchored", {"batch": number, "root": root, "count": count,
                                                        "devices": len(devices)}),))


__all__ = ["DEVICE_SUITES", "IOT_MODULE", "IOT_NAMESPACE", "MAX_BATCH_DEVICES", "MAX_BATCH_READINGS", "MAX_TEXT",
           "IotModule", "check_anchor_args", "compute_batch_key", "compute_device_key", "get_batch", "get_device",
           "get_device_id"]
