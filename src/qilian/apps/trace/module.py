"""The ``trace`` module: supply-chain traceability (溯源) over EPCIS 2.0 shaped events.

Custody is the rule the module keeps: an item (or an aggregate such as a case or pallet) is in the custody of
one organisation; only that organisation may ship, pack, transform or decommission it; a shipment names the
receiving organisation and only a receive by that organisation completes it. An item packed into an aggregate
moves with it: its custody is its outermost container's until it is unpacked. A recall marks a lot, every item
of it, every aggregate holding one of them and everything made from them (transformations followed forward).

State (namespace ``app:trace``):

* ``i`` ‖ id → the item record (:data:`ITEM_FIELDS`), with ``n`` events and the hash-chain ``head`` over them;
* ``e`` ‖ k (4 bytes) ‖ id → ``[entry_hash, tx_hash, height]``, the k-th entry of the item's history;
* ``l`` ‖ lot → ``{owner, count, recalled}``; ``m`` ‖ k ‖ lot → the k-th item commissioned into the lot;
* ``r`` ‖ n (8 bytes) → recall n: ``{lot, reason, org, height, marked: [ids], sources: [ids]}``; ``R`` → count.

Pure code: deterministic, no IO, no time, no floats; every limit is a constant below (docs/limits.md)."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from qilian.apps.base import (
    MAX_FREE_TEXT,
    ZERO_HEAD,
    StateGet,
    compute_chain_head,
    compute_index_key,
    get_record,
    get_text,
    process_put_record,
)
from qilian.apps.trace.epcis import (
    check_event,
    compute_event_hash,
    get_destination,
    get_epc,
    get_event_ids,
    get_lot,
)
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.codec import encode_trusted
from qilian.types.core import Event, Transaction

TRACE_MODULE: Final = "trace"
"""Target of traceability transactions."""
TRACE_NAMESPACE: Final = "app:trace"
"""State namespace of the module."""
DOMAIN_RECALL: Final = b"QILIAN/TRACE-RECALL/1\x00"
"""Prefix of a recall's entry hash in the history of each item it marks."""
MAX_LOT_ITEMS: Final = 10_000
"""Most items commissioned into one lot (a recall must be able to mark them all in one transaction)."""
MAX_CHILDREN: Final = 1_000
"""Most items packed into one aggregate at a time."""
MAX_DERIVED: Final = 256
"""Most transformation outputs recorded as made from one item."""
MAX_CONTAINERS: Final = 64
"""Most aggregates one item is ever packed into (its history lists them)."""
MAX_ITEM_EVENTS: Final = 10_000
"""Most history entries one item takes (bounds its history and certificate)."""
MAX_RECALL_MARKS: Final = 10_000
"""Most items and aggregates one recall marks; a larger one is refused (split the lot)."""
MAX_NESTING: Final = 16
"""Deepest nesting of aggregates (pallet in container in …)."""

RESOURCES: Final = {"commission": "trace.commission", "observe": "trace.observe", "ship": "trace.ship",
                     "receive": "trace.receive", "decommission": "trace.decommission",
                     "aggregate": "trace.aggregate", "transform": "trace.transform", "transact": "trace.transact",
                     "recall": "trace.recall"}
"""Method → policy resource."""

ACTIVE: Final = "active"
IN_TRANSIT: Final = "in_transit"
CONSUMED: Final = "consumed"
DECOMMISSIONED: Final = "decommissioned"

ITEM_FIELDS: Final = ("kind", "owner", "custodian", "status", "to", "lot", "parent", "children", "containers",
                      "from", "into", "recalled", "n", "head", "created")
"""An item record: ``kind`` item|aggregate; ``owner`` the commissioning organisation; ``custodian`` (for a packed
item: the custodian when packed — its container's counts); ``status`` active|in_transit|consumed|decommissioned;
``to`` the destination while in transit; ``lot``; ``parent`` the container it is packed in ("" if none);
``children`` (aggregates); ``containers`` every aggregate it was ever packed into; ``from`` the inputs it was made
from; ``into`` the outputs made from it; ``recalled`` the recall number that marked it (0: none); ``n``/``head``
the history's length and hash chain; ``created`` the height of its first event."""


def compute_item_key(item_id: str) -> bytes:
    return b"i" + item_id.encode()


def compute_entry_key(item_id: str, index: int) -> bytes:
    return compute_index_key(b"e", index, item_id)


def compute_lot_key(lot: str) -> bytes:
    return b"l" + lot.encode()


def compute_lot_item_key(lot: str, index: int) -> bytes:
    return compute_index_key(b"m", index, lot)


def compute_recall_key(number: int) -> bytes:
    return b"r" + number.to_bytes(8, "big")


RECALL_COUNT_KEY: Final = b"R"


def compute_recall_hash(hash_fn: Any, lot: str, reason: str) -> bytes:
    """The entry a recall adds to the history of each item it marks."""
    return hash_fn(DOMAIN_RECALL + encode_trusted([lot, reason]))


def get_item(get: StateGet, item_id: str) -> dict[str, Any] | None:
    """An item's record, or None."""
    return get_record(get, TRACE_NAMESPACE, compute_item_key(item_id))


def get_lot_record(get: StateGet, lot: str) -> dict[str, Any] | None:
    """A lot's record, or None."""
    return get_record(get, TRACE_NAMESPACE, compute_lot_key(lot))


def get_entries(get: StateGet, item_id: str, count: int) -> list[list[Any]]:
    """The first ``count`` history entries ``[entry_hash, tx_hash, height]`` of an item."""
    out = []
    for k in range(count):
        raw = get(TRACE_NAMESPACE, compute_entry_key(item_id, k))
        if raw is None:  # pragma: no cover - written together with the record
            break
        from qilian.types.codec import decode_raw

        out.append(decode_raw(raw))
    return out


def get_outermost(get: StateGet, item_id: str, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The container whose custody an item follows: itself, or the outermost aggregate it is packed in."""
    cur_id, cur = item_id, item
    for _ in range(MAX_NESTING + 1):
        parent = cur["parent"]
        if not parent:
            return cur_id, cur
        nxt = get_item(get, parent)
        if nxt is None:  # pragma: no cover - parents are never deleted
            return cur_id, cur
        cur_id, cur = parent, nxt
    return cur_id, cur  # pragma: no cover - nesting is bounded on packing


def get_location(get: StateGet, item_id: str) -> dict[str, Any] | None:
    """Where an item is now: the custodian, status and destination of its outermost container."""
    item = get_item(get, item_id)
    if item is None:
        return None
    top_id, top = get_outermost(get, item_id, item)
    return {"id": item_id, "custodian": top["custodian"], "status": top["status"] if item["status"] == ACTIVE
            else item["status"], "to": top["to"], "container": "" if top_id == item_id else top_id,
            "lot": item["lot"], "recalled": item["recalled"]}


def _new_item(kind: str, org: str, lot: str, height: int) -> dict[str, Any]:
    return {"kind": kind, "owner": org, "custodian": org, "status": ACTIVE, "to": "", "lot": lot, "parent": "",
            "children": [], "containers": [], "from": [], "into": [], "recalled": 0, "n": 0, "head": ZERO_HEAD,
            "created": height}


class TraceModule(Module):
    """Traceability events with custody rules; see the module docstring."""

    name = TRACE_MODULE
    version = 1
    methods: ClassVar = RESOURCES
    arity: ClassVar = {m: (1,) for m in RESOURCES} | {"recall": (2,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        """The method exists, the arity is right and the event is well formed — all refused at submission."""
        super().check_tx(rules, member, tx)
        method, args = tx.body.method, tx.body.args
        if len(args) not in self.arity[method]:
            raise TxRejected("bad_args", f"trace.{method} takes {self.arity[method][0]} argument(s), got {len(args)}")
        try:
            if method == "recall":
                get_epc(args[0], "lot")
                get_text(args[1], "reason", MAX_FREE_TEXT)
            else:
                check_event(method, args[0])
        except CallFailed as exc:
            raise TxRejected("bad_event", f"trace.{method}: {exc}") from None

    # -- execution ------------------------------------------------------------------------------------------

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        method = call.method
        if method not in RESOURCES:
            raise CallFailed(f"trace has no method {quote(method)}")
        if len(call.args) not in self.arity[method]:
            raise CallFailed(f"trace.{method} takes {self.arity[method][0]} argument(s), got {len(call.args)}")
        me = call.member.to_approver()
        org = call.member.organisation
        if method == "recall":
            return self.process_recall(env, call, org)
        env.process_require(RESOURCES[method], (me,))
        event = check_event(method, call.args[0])
        hash_fn = env.rules.suite.hash
        ev_hash = compute_event_hash(hash_fn, event)
        get = env.state.get
        items: dict[str, dict[str, Any]] = {}

        def load(item_id: str) -> dict[str, Any]:
            if item_id not in items:
                rec = get_item(get, item_id)
                if rec is None:
                    raise CallFailed(f"unknown item {quote(item_id)}: it was never commissioned")
                items[item_id] = rec
            return items[item_id]

        def custody(item_id: str, verb: str) -> dict[str, Any]:
            """The item, which ``org`` must hold, unpacked and active, to ``verb`` it."""
            rec = load(item_id)
            if rec["parent"]:
                raise CallFailed(f"item {quote(item_id)} is packed in {quote(rec['parent'])}: {verb} the "
                                 f"container or unpack it first")
            if rec["status"] == IN_TRANSIT:
                raise CallFailed(f"item {quote(item_id)} is in transit to {rec['to']}; it must be received first")
            if rec["status"] != ACTIVE:
                raise CallFailed(f"item {quote(item_id)} is {rec['status']}")
            if rec["custodian"] != org:
                raise CallFailed(f"item {quote(item_id)} is in the custody of {rec['custodian']}, not {org}: only "
                                 f"the current custodian may {verb} it")
            return rec

        def create(item_id: str, kind: str, lot: str) -> dict[str, Any]:
            old = get_item(get, item_id)
            if old is not None:
                raise CallFailed(f"duplicate commission: {quote(item_id)} was commissioned at height "
                                 f"{old['created']} by {old['owner']}")
            rec = _new_item(kind, org, lot, env.height)
            items[item_id] = rec
            return rec

        def add_to_lot(lot: str, new_ids: list[str]) -> None:
            if not lot:
                return
            rec = get_lot_record(get, lot) or {"owner": org, "count": 0, "recalled": 0}
            if rec["owner"] != org:
                raise CallFailed(f"lot {quote(lot)} belongs to {rec['owner']}; {org} may not add items to it")
            if rec["recalled"]:
                raise CallFailed(f"lot {quote(lot)} is recalled (recall {rec['recalled']}); no items may join it")
            if rec["count"] + len(new_ids) > MAX_LOT_ITEMS:
                raise CallFailed(f"lot {quote(lot)} would hold {rec['count'] + len(new_ids)} items, over the limit "
                                 f"of {MAX_LOT_ITEMS}")
            for k, item_id in enumerate(new_ids):
                env.state.put(TRACE_NAMESPACE, compute_lot_item_key(lot, rec["count"] + k), item_id.encode())
            rec["count"] += len(new_ids)
            process_put_record(env.state, TRACE_NAMESPACE, compute_lot_key(lot), rec)

        result: dict[str, Any] = {"event_hash": ev_hash}
        if method == "commission":
            lot = get_lot(event)
            for item_id in event["epcList"]:
                create(item_id, "item", lot)
            add_to_lot(lot, event["epcList"])
        elif method == "observe":
            for item_id in event["epcList"]:
                load(item_id)
        elif method == "ship":
            dest = get_destination(event)
            if dest not in env.rules.org_names:
                raise CallFailed(f"destination {quote(dest)} is not an organisation of this chain "
                                 f"({', '.join(env.rules.org_names)})")
            if dest == org:
                raise CallFailed(f"destination {dest} is the shipper itself; a shipment goes to another organisation")
            for item_id in event["epcList"]:
                rec = custody(item_id, "ship")
                rec["status"], rec["to"] = IN_TRANSIT, dest
            result["to"] = dest
        elif method == "receive":
            for item_id in event["epcList"]:
                rec = load(item_id)
                if rec["status"] != IN_TRANSIT or rec["to"] != org:
                    where = f"in transit to {rec['to']}" if rec["status"] == IN_TRANSIT else rec["status"]
                    raise CallFailed(f"item {quote(item_id)} is not in transit to {org} (it is {where}, custodian "
                                     f"{rec['custodian']})")
                result.setdefault("from", rec["custodian"])
                rec["custodian"], rec["status"], rec["to"] = org, ACTIVE, ""
        elif method == "decommission":
            for item_id in event["epcList"]:
                rec = custody(item_id, "decommission")
                if rec["children"]:
                    raise CallFailed(f"aggregate {quote(item_id)} still holds {len(rec['children'])} item(s): "
                                     f"unpack it first")
                rec["status"] = DECOMMISSIONED
        elif method == "transact":
            for item_id in event["epcList"]:
                rec = load(item_id)
                _, top = get_outermost(get, item_id, rec)
                if top["custodian"] != org:
                    raise CallFailed(f"item {quote(item_id)} is in the custody of {top['custodian']}, not {org}")
        elif method == "aggregate":
            self.process_aggregate(env, event, org, load, custody, create)
        elif method == "transform":
            ins, outs = event["inputEPCList"], event["outputEPCList"]
            lot = get_lot(event)
            for item_id in ins:
                rec = custody(item_id, "transform")
                if rec["kind"] != "item":
                    raise CallFailed(f"{quote(item_id)} is an aggregate; unpack it and transform its items")
                if len(rec["into"]) + len(outs) > MAX_DERIVED:
                    raise CallFailed(f"item {quote(item_id)} would have more than {MAX_DERIVED} derived outputs")
                rec["status"] = CONSUMED
                rec["into"] = [*rec["into"], *outs]
            for item_id in outs:
                create(item_id, "item", lot)["from"] = list(ins)
            add_to_lot(lot, outs)
        # Every touched item gets the event in its history, in the order the event names them.
        for item_id in get_event_ids(event):
            self.process_entry(env, call, item_id, load(item_id), ev_hash)
        for item_id, rec in items.items():
            process_put_record(env.state, TRACE_NAMESPACE, compute_item_key(item_id), rec)
        ids = get_event_ids(event)
        return Outcome(result, (Event(TRACE_MODULE, method, {"event_hash": ev_hash, "ids": ids[:64],
                                                             "count": len(ids)}),))

    def process_entry(self, env: BlockEnv, call: TxCall, item_id: str, rec: dict[str, Any], entry: bytes) -> None:
        """Append one entry to an item's history and move its hash-chain head."""
        if rec["n"] >= MAX_ITEM_EVENTS:
            raise CallFailed(f"item {quote(item_id)} has {MAX_ITEM_EVENTS} history entries, the limit")
        env.state.put(TRACE_NAMESPACE, compute_entry_key(item_id, rec["n"]),
                      encode_trusted([entry, call.tx_hash, env.height]))
        rec["head"] = compute_chain_head(env.rules.suite.hash, rec["head"], entry, call.tx_hash)
        rec["n"] += 1

    def process_aggregate(self, env: BlockEnv, event: dict[str, Any], org: str, load: Any, custody: Any,
                          create: Any) -> None:
        """Pack children into a parent (created on first packing) or unpack them."""
        parent_id, children = event["parentID"], event["childEPCs"]
        get = env.state.get
        if event["action"] == "ADD":
            parent = get_item(get, parent_id)
            if parent is None:
                parent = create(parent_id, "aggregate", "")
            else:
                parent = load(parent_id)
                if parent["kind"] != "aggregate":
                    raise CallFailed(f"{quote(parent_id)} is an item, not an aggregate (case, pallet …)")
                _, top = get_outermost(get, parent_id, parent)
                if top["custodian"] != org or top["status"] != ACTIVE or parent["status"] != ACTIVE:
                    raise CallFailed(f"aggregate {quote(parent_id)} is not active in the custody of {org}")
            if len(parent["children"]) + len(children) > MAX_CHILDREN:
                raise CallFailed(f"aggregate {quote(parent_id)} would hold more than {MAX_CHILDREN} items")
            # No cycles: the parent must not be (inside) one of the children.
            chain, cur = {parent_id}, parent
            for _ in range(MAX_NESTING):
                if not cur["parent"]:
                    break
                chain.add(cur["parent"])
                cur = load(cur["parent"])
            else:
                raise CallFailed(f"aggregates may nest at most {MAX_NESTING} deep")
            for child_id in children:
                if child_id in chain:
                    raise CallFailed(f"{quote(child_id)} cannot be packed into itself or into its own content")
                rec = custody(child_id, "pack")
                rec["parent"] = parent_id
                if parent_id not in rec["containers"]:
                    if len(rec["containers"]) >= MAX_CONTAINERS:
                        raise CallFailed(f"item {quote(child_id)} was packed into {MAX_CONTAINERS} aggregates, "
                                         f"the limit")
                    rec["containers"] = [*rec["containers"], parent_id]
            parent["children"] = [*parent["children"], *children]
        else:
            parent = load(parent_id)
            _, top = get_outermost(get, parent_id, parent)
            if top["custodian"] != org or top["status"] != ACTIVE:
                raise CallFailed(f"aggregate {quote(parent_id)} is in the custody of {top['custodian']} "
                                 f"({top['status']}), not active with {org}")
            for child_id in children:
                if child_id not in parent["children"]:
                    raise CallFailed(f"{quote(child_id)} is not packed in {quote(parent_id)}")
                rec = load(child_id)
                rec["parent"], rec["custodian"] = "", org
            gone = set(children)
            parent["children"] = [c for c in parent["children"] if c not in gone]

    def process_recall(self, env: BlockEnv, call: TxCall, org: str) -> Outcome:
        """Mark a lot, its items, the aggregates holding them and everything made from them (forward)."""
        lot = get_epc(call.args[0], "lot")
        reason = get_text(call.args[1], "reason", MAX_FREE_TEXT)
        get = env.state.get
        lot_rec = get_lot_record(get, lot)
        if lot_rec is None:
            raise CallFailed(f"unknown lot {quote(lot)}: no item was commissioned into it")
        env.process_require(RESOURCES["recall"], (call.member.to_approver(),), lot_rec["owner"])
        if lot_rec["recalled"]:
            raise CallFailed(f"lot {quote(lot)} is already recalled (recall {lot_rec['recalled']})")
        count = int.from_bytes(get(TRACE_NAMESPACE, RECALL_COUNT_KEY) or b"\x00", "big") + 1
        entry = compute_recall_hash(env.rules.suite.hash, lot, reason)
        queue: list[str] = []
        for k in range(lot_rec["count"]):
            raw = get(TRACE_NAMESPACE, compute_lot_item_key(lot, k))
            if raw is not None:
                queue.append(raw.decode())
        marked: dict[str, dict[str, Any]] = {}
        sources: list[str] = []
        i = 0
        while i < len(queue):
            item_id = queue[i]
            i += 1
            if item_id in marked:
                continue
            rec = get_item(get, item_id)
            if rec is None:  # pragma: no cover - lot entries name existing items
                continue
            if len(marked) >= MAX_RECALL_MARKS:
                raise CallFailed(f"recall of {quote(lot)} would mark more than {MAX_RECALL_MARKS} items and "
                                 f"aggregates, the limit")
            marked[item_id] = rec
            if not rec["recalled"]:
                rec["recalled"] = count
            queue.extend(rec["into"])  # forward: what was made from it
            if rec["parent"]:
                queue.append(rec["parent"])  # the aggregate holding it (and, through it, the ones above)
            for src in rec["from"]:  # backward: reported as sources to investigate, not marked
                if src not in sources:
                    sources.append(src)
        sources = [s for s in sources if s not in marked]
        for item_id, rec in marked.items():
            self.process_entry(env, call, item_id, rec, entry)
            process_put_record(env.state, TRACE_NAMESPACE, compute_item_key(item_id), rec)
        lot_rec["recalled"] = count
        process_put_record(env.state, TRACE_NAMESPACE, compute_lot_key(lot), lot_rec)
        env.state.put(TRACE_NAMESPACE, RECALL_COUNT_KEY, count.to_bytes(8, "big"))
        record = {"lot": lot, "reason": reason, "org": org, "height": env.height, "marked": list(marked),
                  "sources": sources}
        process_put_record(env.state, TRACE_NAMESPACE, compute_recall_key(count), record)
        return Outcome({"recall": count, "marked": len(marked), "sources": sources[:64]},
                       (Event(TRACE_MODULE, "recall", {"recall": count, "lot": lot, "marked": len(marked)}),))


__all__ = ["ITEM_FIELDS", "RESOURCES", "TRACE_MODULE", "TRACE_NAMESPACE", "TraceModule", "compute_entry_key",
           "compute_item_key", "compute_lot_item_key", "compute_lot_key", "compute_recall_hash",
           "compute_recall_key", "get_entries", "get_item", "get_location", "get_lot_record", "get_outermost"]
