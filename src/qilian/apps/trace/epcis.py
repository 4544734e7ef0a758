"""EPCIS 2.0 shaped events: which fields an event may carry, how each is checked, and the hash the chain proves.

An event is a canonical map (the codec sorts keys and refuses floats), so its bytes — and so its hash — are fixed
by its content alone: ``event_hash = H("QILIAN/EPCIS/1\\0" ‖ encode(event))`` with the chain's suite hash. Test
vectors: tests/vectors/trace_events.json. The field names are EPCIS 2.0's JSON binding (``type``, ``action``,
``bizStep``, ``epcList``, ``parentID``, ``childEPCs``, ``inputEPCList``, ``outputEPCList``, ``eventTime``,
``readPoint``, ``bizLocation``, ``disposition``, ``bizTransactionList``, ``sourceList``, ``destinationList``,
``sensorElementList``, ``ilmd``); values are plain text (CBV words such as ``shipping`` rather than full URIs),
and sensor values are integers or decimal strings — never floats, which nodes could round differently.

Static checks only (no state): the mempool runs them, so a malformed event is refused at submission with a 4xx
that names the field, and never reaches a block. Pure code."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from qilian.apps.base import MAX_TEXT, get_identifier, get_text
from qilian.execution.env import CallFailed
from qilian.execution.messages import quote
from qilian.types.codec import encode_trusted

DOMAIN_EPCIS: Final = b"QILIAN/EPCIS/1\x00"
"""Prefix of the bytes an event hash covers."""
MAX_EPCS: Final = 500
"""Most identifiers in one event's epcList, childEPCs, inputEPCList or outputEPCList."""
MAX_LIST: Final = 16
"""Most entries in bizTransactionList, sourceList, destinationList, sensorElementList and one sensorReport."""

EVENT_TYPES: Final = ("ObjectEvent", "AggregationEvent", "TransformationEvent", "TransactionEvent")
METHOD_SHAPES: Final[dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]] = {
    # method: (event type, allowed actions, allowed bizSteps; empty = any CBV word not reserved below)
    "commission": ("ObjectEvent", ("ADD",), ("commissioning",)),
    "observe": ("ObjectEvent", ("OBSERVE",), ()),
    "ship": ("ObjectEvent", ("OBSERVE",), ("shipping",)),
    "receive": ("ObjectEvent", ("OBSERVE",), ("receiving",)),
    "decommission": ("ObjectEvent", ("DELETE",), ("decommissioning",)),
    "aggregate": ("AggregationEvent", ("ADD", "DELETE"), ("packing", "unpacking")),
    "transform": ("TransformationEvent", (), ("transforming", "commissioning")),
    "transact": ("TransactionEvent", ("ADD", "DELETE"), ()),
}
"""What each ``trace`` method accepts."""
RESERVED_STEPS: Final = frozenset({"commissioning", "shipping", "receiving", "decommissioning", "packing",
                                   "unpacking", "transforming"})
"""bizSteps that change custody or existence: only their own method records them."""

_COMMON: Final = ("type", "eventTime", "bizStep", "readPoint", "bizLocation", "disposition", "bizTransactionList",
                  "sourceList", "destinationList", "sensorElementList")
FIELDS: Final[dict[str, frozenset[str]]] = {
    "ObjectEvent": frozenset((*_COMMON, "action", "epcList", "ilmd")),
    "AggregationEvent": frozenset((*_COMMON, "action", "parentID", "childEPCs")),
    "TransformationEvent": frozenset((*_COMMON, "inputEPCList", "outputEPCList", "ilmd")),
    "TransactionEvent": frozenset((*_COMMON, "action", "epcList", "parentID")),
}
"""Fields each event type may carry; any other field is refused (extensions are not supported yet)."""

_TIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_WORD_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DECIMAL_RE: Final = re.compile(r"-?\d{1,18}(\.\d{1,18})?")
_GS1: Final[dict[str, tuple[re.Pattern[str], int]]] = {
    # scheme: (shape, total digits of the numeric parts before the serial)
    "urn:epc:id:sgtin:": (re.compile(r"(\d{6,12})\.(\d{1,7})\.([!-~]{1,20})"), 13),
    "urn:epc:id:sscc:": (re.compile(r"(\d{6,12})\.(\d{5,11})"), 17),
    "urn:epc:class:lgtin:": (re.compile(r"(\d{6,12})\.(\d{1,7})\.([!-~]{1,20})"), 13),
    "urn:epc:id:sgln:": (re.compile(r"(\d{6,12})\.(\d{0,6})\.([!-~]{1,20})"), 12),
}
"""The GS1 EPC URI schemes checked structurally (TDS 2.0 §6); other ``urn:epc:`` schemes are refused, any other
URI is an organisation's own identifier and only its syntax is checked."""


def get_epc(value: Any, what: str) -> str:
    """An identifier: a GS1 EPC URI of a supported scheme, checked digit by digit, or another URI."""
    text = get_identifier(value, what)
    if text.startswith("urn:epc:"):
        for prefix, (shape, digits) in _GS1.items():
            if text.startswith(prefix):
                m = shape.fullmatch(text[len(prefix):])
                if m is None or len(m.group(1)) + len(m.group(2)) != digits:
                    raise CallFailed(f"{what} {quote(text)} is not a well-formed {prefix[:-1]} URI "
                                     f"(company prefix + reference = {digits} digits)")
                return text
        raise CallFailed(f"{what} {quote(text)}: unsupported GS1 scheme (supported: "
                         f"{', '.join(p[:-1] for p in _GS1)})")
    return text


def get_epc_list(value: Any, what: str, empty: bool = False) -> list[str]:
    """A list of distinct identifiers, 1..MAX_EPCS long (or empty when allowed)."""
    if type(value) is not list:
        raise CallFailed(f"{what} must be a list of identifiers")
    if not value and not empty:
        raise CallFailed(f"{what} must not be empty")
    if len(value) > MAX_EPCS:
        raise CallFailed(f"{what} holds {len(value)} identifiers, over the limit of {MAX_EPCS}")
    out = [get_epc(v, f"{what}[{i}]") for i, v in enumerate(value)]
    if len(set(out)) != len(out):
        raise CallFailed(f"{what} names an identifier twice")
    return out


def _check_list_of_maps(value: Any, what: str, keys: dict[str, Callable[[Any, str], Any]],
                        required: tuple[str, ...]) -> None:
    if type(value) is not list or not value or len(value) > MAX_LIST:
        raise CallFailed(f"{what} must be a list of 1..{MAX_LIST} entries")
    for i, entry in enumerate(value):
        where = f"{what}[{i}]"
        if type(entry) is not dict:
            raise CallFailed(f"{where} must be a map")
        for k in entry:
            if k not in keys:
                raise CallFailed(f"{where} has unknown field {quote(k)} (fields: {', '.join(keys)})")
        for k in required:
            if k not in entry:
                raise CallFailed(f"{where} lacks {k}")
        for k, check in keys.items():
            if k in entry:
                check(entry[k], f"{where}.{k}")


def get_sensor_value(value: Any, what: str) -> int | str:
    """A sensor value: an integer, or a decimal string such as ``-18.5`` (floats are refused: they round)."""
    if type(value) is int:
        return value
    if type(value) is str and _DECIMAL_RE.fullmatch(value):
        return value
    raise CallFailed(f"{what} must be an integer or a decimal string like \"4.5\" (no floats)")


def _word(value: Any, what: str) -> str:
    text = get_text(value, what, 64)
    if not _WORD_RE.fullmatch(text):
        raise CallFailed(f"{what} {quote(text)} is not a CBV word (lower case, digits, underscores)")
    return text


def _location(value: Any, what: str) -> None:
    if type(value) is not dict or set(value) != {"id"}:
        raise CallFailed(f"{what} must be {{\"id\": identifier}}")
    get_epc(value["id"], f"{what}.id")


def _sensor_element(value: Any, what: str) -> None:
    report = {"type": lambda v, w: get_text(v, w, 64), "value": get_sensor_value,
              "uom": lambda v, w: get_text(v, w, 16), "deviceID": get_epc}
    if type(value) is not dict or set(value) - {"sensorReport", "sensorMetadata"} or "sensorReport" not in value:
        raise CallFailed(f"{what} must be {{\"sensorReport\": [...]}} (optionally with sensorMetadata)")
    _check_list_of_maps(value["sensorReport"], f"{what}.sensorReport", report, ("type", "value"))
    meta = value.get("sensorMetadata", {})
    if type(meta) is not dict or any(type(k) is not str or type(v) is not str or len(v) > MAX_TEXT
                                     for k, v in meta.items()) or len(meta) > MAX_LIST:
        raise CallFailed(f"{what}.sensorMetadata must map names to short text")


def get_destination(event: dict[str, Any]) -> str:
    """The organisation a shipping event sends to: the ``owning_party`` entry of its destinationList."""
    dests = [d["destination"] for d in event.get("destinationList", ()) if d.get("type") == "owning_party"]
    if len(dests) != 1:
        raise CallFailed("a shipping event names exactly one destinationList entry of type owning_party "
                         "(the receiving organisation)")
    return str(dests[0])


def get_lot(event: dict[str, Any]) -> str:
    """The lot an event's new items belong to (``ilmd.lotNumber``), or ""."""
    ilmd = event.get("ilmd")
    return "" if ilmd is None else str(ilmd["lotNumber"])


def check_event(method: str, event: Any) -> dict[str, Any]:
    """Check ``event`` as an argument of ``trace.<method>``; returns it, or raises CallFailed naming the field."""
    shape = METHOD_SHAPES.get(method)
    if shape is None:
        raise CallFailed(f"trace has no event method {quote(method)}")
    etype, actions, steps = shape
    if type(event) is not dict:
        raise CallFailed("an event is a map of EPCIS fields (type, eventTime, bizStep, …)")
    if event.get("type") != etype:
        raise CallFailed(f"trace.{method} records a {etype}, got type {quote(event.get('type'))}")
    for k in event:
        if k not in FIELDS[etype]:
            raise CallFailed(f"{etype} has no field {quote(k)} (fields: {', '.join(sorted(FIELDS[etype]))})")
    t = get_text(event.get("eventTime"), "eventTime", 40)
    if not _TIME_RE.fullmatch(t):
        raise CallFailed(f"eventTime {quote(t)} is not an RFC 3339 time with offset, e.g. 2025-05-01T08:00:00+08:00")
    if actions:
        if event.get("action") not in actions:
            raise CallFailed(f"trace.{method} needs action {' or '.join(actions)}, got {quote(event.get('action'))}")
    step = _word(event.get("bizStep"), "bizStep")
    if steps and step not in steps:
        raise CallFailed(f"trace.{method} needs bizStep {' or '.join(steps)}, got {quote(step)}")
    if not steps and step in RESERVED_STEPS:
        raise CallFailed(f"bizStep {step} is recorded with its own command (trace.{_owner_of(step)})")
    if etype == "AggregationEvent":
        if (event["action"] == "ADD") != (step == "packing"):
            raise CallFailed("packing is action ADD, unpacking is action DELETE")
        get_epc(event.get("parentID"), "parentID")
        get_epc_list(event.get("childEPCs"), "childEPCs")
    elif etype == "TransformationEvent":
        ins = get_epc_list(event.get("inputEPCList"), "inputEPCList")
        outs = get_epc_list(event.get("outputEPCList"), "outputEPCList")
        if set(ins) & set(outs):
            raise CallFailed("an identifier is both an input and an output of the transformation")
    else:
        get_epc_list(event.get("epcList"), "epcList")
        if "parentID" in event:
            get_epc(event["parentID"], "parentID")
    if "ilmd" in event:
        ilmd = event["ilmd"]
        if type(ilmd) is not dict or set(ilmd) != {"lotNumber"}:
            raise CallFailed('ilmd must be {"lotNumber": lot identifier}')
        get_epc(ilmd["lotNumber"], "ilmd.lotNumber")
        if method not in ("commission", "transform"):
            raise CallFailed("ilmd (the lot of new items) belongs to commissioning and transformation events only")
    for k in ("readPoint", "bizLocation"):
        if k in event:
            _location(event[k], k)
    if "disposition" in event:
        _word(event["disposition"], "disposition")
    if "bizTransactionList" in event:
        _check_list_of_maps(event["bizTransactionList"], "bizTransactionList",
                            {"type": _word, "bizTransaction": get_identifier}, ("bizTransaction",))
    elif etype == "TransactionEvent":
        raise CallFailed("a TransactionEvent needs a bizTransactionList")
    for k, field in (("sourceList", "source"), ("destinationList", "destination")):
        if k in event:
            _check_list_of_maps(event[k], k, {"type": _word, field: lambda v, w: get_text(v, w)}, ("type", field))
    if "sensorElementList" in event:
        v = event["sensorElementList"]
        if type(v) is not list or not v or len(v) > MAX_LIST:
            raise CallFailed(f"sensorElementList must be a list of 1..{MAX_LIST} entries")
        for i, el in enumerate(v):
            _sensor_element(el, f"sensorElementList[{i}]")
    if method == "ship":
        get_destination(event)
    return event


def _owner_of(step: str) -> str:
    for m, (_, _, steps) in METHOD_SHAPES.items():
        if step in steps:
            return m
    return "?"  # pragma: no cover


def compute_event_bytes(event: dict[str, Any]) -> bytes:
    """The canonical bytes of an event (what its hash covers)."""
    return encode_trusted(event)


def compute_event_hash(hash_fn: Callable[[bytes], bytes], event: dict[str, Any]) -> bytes:
    """The hash the chain proves for an event."""
    return hash_fn(DOMAIN_EPCIS + compute_event_bytes(event))


def get_event_ids(event: dict[str, Any]) -> list[str]:
    """Every identifier an event touches, in event order (parent first for aggregations)."""
    if event["type"] == "AggregationEvent":
        return [event["parentID"], *event["childEPCs"]]
    if event["type"] == "TransformationEvent":
        return [*event["inputEPCList"], *event["outputEPCList"]]
    return list(event["epcList"])


__all__ = ["DOMAIN_EPCIS", "EVENT_TYPES", "MAX_EPCS", "METHOD_SHAPES", "check_event", "compute_event_bytes",
           "compute_event_hash", "get_destination", "get_epc", "get_event_ids", "get_lot"]
