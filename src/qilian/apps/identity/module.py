"""The ``did`` module: did:qilian DID documents and Bitstring Status List bits in chain state (docs/did-method.md).

Control is by DID keys, not by chain membership: every operation carries a signature by a capabilityInvocation
key of the DID itself or of one of its controllers, over the chain ID, the DID, the operation, its payload and the
DID's sequence number (so a signature is good for exactly one operation once). Any member may relay it (policy
``did.write``), so a person without a chain key can hold a DID. Keys may be SM2 or Ed25519 whatever the chain's
suite. Pure code, no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from qilian.crypto import get_suite
from qilian.crypto.suite import Suite
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.codec import decode_raw, encode, encode_trusted
from qilian.types.core import Event, Transaction

DID_MODULE: Final = "did"
"""Target of DID transactions."""
DID_NAMESPACE: Final = "app:did"
"""``d`` ‖ 20-byte id → DID record; ``s`` ‖ 20-byte id ‖ list name ‖ 0x00 ‖ chunk (2 bytes) → 256 status bytes."""
DID_PREFIX: Final = "did:qilian:"
"""Every did:qilian DID starts so; 40 lower-case hex digits follow."""
DOMAIN_DID: Final = b"QILIAN/DID-OP/1\x00"
"""Prefix of what a DID key signs for an operation."""
DOMAIN_DID_ID: Final = b"QILIAN/DID/1\x00"
"""Prefix of the hash that derives a DID from its first key."""
KEY_TYPES: Final = {"Ed25519": "ed25519", "SM2": "sm2"}
"""Verification key type → crypto suite."""
RELATIONSHIPS: Final = ("authentication", "assertionMethod", "capabilityInvocation")
"""Verification relationships a DID record keeps (capabilityInvocation keys control the DID)."""
MAX_KEYS: Final = 8
"""Verification methods per DID."""
MAX_CONTROLLERS: Final = 4
"""Controllers per DID."""
MAX_SERVICES: Final = 4
"""Service endpoints per DID."""
MAX_FRAGMENT: Final = 32
"""Longest key or service fragment (letters, digits, - and _)."""
MAX_ENDPOINT: Final = 256
"""Longest service type or endpoint (bytes)."""
STATUS_LIST_BITS: Final = 131_072
"""Entries in one status list: the Bitstring Status List minimum (16 KiB), for group privacy."""
STATUS_CHUNK_BYTES: Final = 256
"""Status bits are stored (and proven) in chunks of 256 bytes = 2048 entries."""
MAX_LIST_NAME: Final = 32
"""Longest status list name."""


def is_did(value: Any) -> bool:
    """Whether ``value`` is a did:qilian DID (``did:qilian:`` + 40 lower-case hex digits)."""
    if type(value) is not str or not value.startswith(DID_PREFIX):
        return False
    rest = value[len(DID_PREFIX):]
    return len(rest) == 40 and all(c in "0123456789abcdef" for c in rest)


def is_fragment(value: Any) -> bool:
    """Whether ``value`` may name a key, a service or a status list."""
    return (type(value) is str and 1 <= len(value) <= MAX_FRAGMENT and value.isascii()
            and all(c.isalnum() or c in "-_" for c in value))


def compute_did(key_type: str, public_key: bytes) -> str:
    """The DID a first capabilityInvocation key creates: a hash of the key, so nobody can take another's DID."""
    suite = get_suite(KEY_TYPES[key_type])
    return DID_PREFIX + suite.hash(DOMAIN_DID_ID + key_type.encode() + b"\x00" + public_key)[:20].hex()


def compute_did_key(did: str) -> bytes:
    """State key of a DID's record."""
    return b"d" + bytes.fromhex(did[len(DID_PREFIX):])


def compute_status_key(did: str, list_name: str, chunk: int) -> bytes:
    """State key of one chunk of a status list."""
    return b"s" + bytes.fromhex(did[len(DID_PREFIX):]) + list_name.encode() + b"\x00" + chunk.to_bytes(2, "big")


def compute_op_sign_bytes(chain_id: str, did: str, op: str, payload: Any, seq: int) -> bytes:
    """What a DID key signs: the domain tag and canonical ``[chain_id, did, op, payload, seq]`` (the key's suite
    hashes it as part of signing)."""
    return DOMAIN_DID + encode([chain_id, did, op, payload, seq])


@dataclass(frozen=True, slots=True)
class DidRecord:
    """A DID document as chain state holds it (the W3C document is rendered from it by the resolver)."""

    did: str
    """The DID."""
    keys: tuple[tuple[str, str, bytes], ...]
    """Verification methods ``(fragment, type, public key)``; type Ed25519 or SM2."""
    controllers: tuple[str, ...]
    """DIDs whose capabilityInvocation keys may also change this one."""
    relationships: dict[str, tuple[str, ...]]
    """Relationship → key fragments."""
    services: tuple[tuple[str, str, str], ...]
    """Service endpoints ``(fragment, type, endpoint)``."""
    seq: int
    """Operations applied so far (the next operation signs this number)."""
    created: int
    """Height of creation."""
    updated: int
    """Height of the last operation."""
    deactivated: bool
    """Deactivated DIDs resolve with ``deactivated: true`` and accept no further operation."""

    def to_value(self) -> dict[str, Any]:
        return {"did": self.did, "keys": [list(k) for k in self.keys], "controllers": list(self.controllers),
                "relationships": {r: list(v) for r, v in self.relationships.items()},
                "services": [list(s) for s in self.services], "seq": self.seq, "created": self.created,
                "updated": self.updated, "deactivated": self.deactivated}

    @classmethod
    def from_value(cls, d: dict[str, Any]) -> DidRecord:
        return cls(d["did"], tuple((k[0], k[1], k[2]) for k in d["keys"]), tuple(d["controllers"]),
                   {r: tuple(v) for r, v in d["relationships"].items()},
                   tuple((s[0], s[1], s[2]) for s in d["services"]), d["seq"], d["created"], d["updated"],
                   d["deactivated"])

    def get_key(self, fragment: str) -> tuple[str, bytes] | None:
        """(type, public key) of a verification method."""
        for f, t, pk in self.keys:
            if f == fragment:
                return t, pk
        return None


def get_did(state: Any, did: str) -> DidRecord | None:
    """A stored DID record (``state`` is a ``get(namespace, key)`` callable)."""
    raw = state(DID_NAMESPACE, compute_did_key(did))
    return None if raw is None else DidRecord.from_value(decode_raw(raw))


def compute_document(did: str, doc: Any) -> tuple[tuple[tuple[str, str, bytes], ...], tuple[str, ...],
                                                  dict[str, tuple[str, ...]], tuple[tuple[str, str, str], ...]]:
    """Check a document as submitted — ``{keys: [[fragment, type, public_key]], controllers: [did],
    authentication|assertionMethod|capabilityInvocation: [fragment], services: [[fragment, type, endpoint]]}`` —
    and return its parts; CallFailed names the part at fault."""
    if type(doc) is not dict or set(doc) - {"keys", "controllers", "services", *RELATIONSHIPS}:
        raise CallFailed("a DID document is a map of keys, controllers, services, " + ", ".join(RELATIONSHIPS))
    raw_keys = doc.get("keys", [])
    if type(raw_keys) is not list or not 1 <= len(raw_keys) <= MAX_KEYS:
        raise CallFailed(f"a DID document holds 1..{MAX_KEYS} keys")
    keys = []
    for k in raw_keys:
        if type(k) is not list or len(k) != 3 or not is_fragment(k[0]) or k[1] not in KEY_TYPES \
                or type(k[2]) is not bytes:
            raise CallFailed("a key is [fragment, Ed25519|SM2, public_key bytes]")
        if not get_suite(KEY_TYPES[k[1]]).is_valid_public_key(k[2]):
            raise CallFailed(f"key {k[0]} is not a valid {k[1]} public key")
        keys.append((k[0], k[1], k[2]))
    if len({k[0] for k in keys}) != len(keys):
        raise CallFailed("key fragments must not repeat")
    controllers = doc.get("controllers", [])
    if type(controllers) is not list or len(controllers) > MAX_CONTROLLERS or not all(is_did(c) for c in controllers) \
            or len(set(controllers)) != len(controllers) or did in controllers:
        raise CallFailed(f"controllers is a list of at most {MAX_CONTROLLERS} other did:qilian DIDs")
    rels: dict[str, tuple[str, ...]] = {}
    names = {k[0] for k in keys}
    for r in RELATIONSHIPS:
        v = doc.get(r, [])
        if type(v) is not list or any(f not in names for f in v) or len(set(v)) != len(v):
            raise CallFailed(f"{r} must list fragments of the document's keys")
        rels[r] = tuple(v)
    if not rels["capabilityInvocation"] and not controllers:
        raise CallFailed("a DID needs a capabilityInvocation key or a controller, or nobody could ever change it")
    services = doc.get("services", [])
    if type(services) is not list or len(services) > MAX_SERVICES or not all(
            type(s) is list and len(s) == 3 and is_fragment(s[0]) and all(
                type(x) is str and 0 < len(x.encode()) <= MAX_ENDPOINT for x in s[1:]) for s in services):
        raise CallFailed(f"services is a list of at most {MAX_SERVICES} [fragment, type, endpoint]")
    return tuple(keys), tuple(controllers), rels, tuple((s[0], s[1], s[2]) for s in services)


class DidModule(Module):
    """DID documents and their status lists."""

    name = DID_MODULE
    version = 1
    methods: ClassVar = {"create": "did.write", "update": "did.write", "deactivate": "did.write",
                         "set_status": "did.write"}
    arity: ClassVar = {"create": (2,), "update": (4,), "deactivate": (3,), "set_status": (6,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        counts = self.arity[tx.body.method]
        if len(tx.body.args) not in counts:
            raise TxRejected("bad_args", f"did.{tx.body.method} takes {counts[0]} argument(s), got "
                                         f"{len(tx.body.args)}")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        if call.method not in self.methods or len(call.args) not in self.arity[call.method]:
            raise CallFailed(f"did has no method {quote(call.method)} taking {len(call.args)} argument(s)")
        env.process_require("did.write", (call.member.to_approver(),))
        if call.method == "create":
            return self.process_create(env, call)
        did = call.args[0]
        if not is_did(did):
            raise CallFailed(f"{quote(did)} is not a did:qilian DID (did:qilian: and 40 lower-case hex digits)")
        record = get_did(env.state.get, did)
        if record is None:
            raise CallFailed(f"unknown DID {did}")
        if record.deactivated:
            raise CallFailed(f"{did} is deactivated (at height {record.updated}); it accepts no operation")
        if call.method == "update":
            return self.process_update(env, call, record)
        if call.method == "deactivate":
            return self.process_deactivate(env, call, record)
        return self.process_set_status(env, call, record)

    def process_create(self, env: BlockEnv, call: TxCall) -> Outcome:
        """create(document, signature): the DID derives from the first capabilityInvocation key, which signs."""
        doc, signature = call.args
        if type(doc) is not dict or not doc.get("capabilityInvocation"):
            raise CallFailed("a new DID document names its first capabilityInvocation key, which signs the creation")
        first = doc["capabilityInvocation"][0]
        by_name = {k[0]: k for k in doc.get("keys", []) if type(k) is list and len(k) == 3}
        if first not in by_name or by_name[first][1] not in KEY_TYPES or type(by_name[first][2]) is not bytes:
            raise CallFailed(f"capabilityInvocation key {quote(first)} is not among the document's keys")
        did = compute_did(by_name[first][1], by_name[first][2])
        keys, controllers, rels, services = compute_document(did, doc)
        if get_did(env.state.get, did) is not None:
            raise CallFailed(f"{did} exists already")
        self._check_signature(env, did, "create", doc, 0, keys[[k[0] for k in keys].index(first)], signature)
        record = DidRecord(did, keys, controllers, rels, services, 1, env.height, env.height, False)
        self._put(env, record)
        return Outcome({"did": did, "seq": 1}, (Event(DID_MODULE, "Created", {"did": did}),))

    def process_update(self, env: BlockEnv, call: TxCall, record: DidRecord) -> Outcome:
        """update(did, document, signer, signature): replaces keys, controllers, relationships and services — a
        key rotation is an update whose new document drops the old key."""
        _, doc, signer, signature = call.args
        self._authorise(env, record, "update", doc, signer, signature)
        keys, controllers, rels, services = compute_document(record.did, doc)
        new = DidRecord(record.did, keys, controllers, rels, services, record.seq + 1, record.created, env.height,
                        False)
        self._put(env, new)
        return Outcome({"did": record.did, "seq": new.seq}, (Event(DID_MODULE, "Updated", {
            "did": record.did, "seq": new.seq, "signer": signer}),))

    def process_deactivate(self, env: BlockEnv, call: TxCall, record: DidRecord) -> Outcome:
        _, signer, signature = call.args
        self._authorise(env, record, "deactivate", None, signer, signature)
        new = DidRecord(record.did, (), record.controllers, {r: () for r in RELATIONSHIPS}, (), record.seq + 1,
                        record.created, env.height, True)
        self._put(env, new)
        return Outcome({"did": record.did, "seq": new.seq}, (Event(DID_MODULE, "Deactivated", {
            "did": record.did, "signer": signer}),))

    def process_set_status(self, env: BlockEnv, call: TxCall, record: DidRecord) -> Outcome:
        """set_status(did, list, index, bit, signer, signature): set or clear one entry of the DID's status list
        (a revocation list is never cleared back by convention, but suspension lists are)."""
        _, list_name, index, bit, signer, signature = call.args
        if not is_fragment(list_name):
            raise CallFailed(f"status list name {quote(list_name)} must be 1..{MAX_LIST_NAME} letters, digits, - _")
        if type(index) is not int or not 0 <= index < STATUS_LIST_BITS:
            raise CallFailed(f"status index must be 0..{STATUS_LIST_BITS - 1}")
        if bit not in (0, 1) or type(bit) is not int:
            raise CallFailed("a status bit is 0 or 1")
        self._authorise(env, record, "set_status", [list_name, index, bit], signer, signature)
        chunk, offset = divmod(index, STATUS_CHUNK_BYTES * 8)
        key = compute_status_key(record.did, list_name, chunk)
        data = bytearray(env.state.get(DID_NAMESPACE, key) or bytes(STATUS_CHUNK_BYTES))
        byte, shift = divmod(offset, 8)
        mask = 0x80 >> shift  # bit 0 is the most significant bit of the first byte (Bitstring Status List)
        data[byte] = (data[byte] | mask) if bit else (data[byte] & ~mask)
        env.state.put(DID_NAMESPACE, key, None if not any(data) else bytes(data))
        self._put(env, DidRecord(**{**_fields(record), "seq": record.seq + 1, "updated": env.height}))
        return Outcome({"did": record.did, "list": list_name, "index": index, "bit": bit}, (Event(
            DID_MODULE, "StatusSet", {"did": record.did, "list": list_name, "index": index, "bit": bit}),))

    # -- helpers ----------------------------------------------------------------------------------------------

    def _put(self, env: BlockEnv, record: DidRecord) -> None:
        env.state.put(DID_NAMESPACE, compute_did_key(record.did), encode_trusted(record.to_value()))

    def _authorise(self, env: BlockEnv, record: DidRecord, op: str, payload: Any, signer: Any,
                   signature: Any) -> None:
        """CallFailed unless ``signer`` (a DID URL ``did#fragment``) is a capabilityInvocation key of the DID or of
        one of its controllers (itself active), and its signature covers this operation at the current seq."""
        if type(signer) is not str or "#" not in signer:
            raise CallFailed("the signer is a DID URL did:qilian:...#fragment")
        signer_did, fragment = signer.split("#", 1)
        if signer_did == record.did:
            owner = record
        elif signer_did in record.controllers:
            found = get_did(env.state.get, signer_did)
            if found is None or found.deactivated:
                raise CallFailed(f"controller {signer_did} of {record.did} is unknown or deactivated")
            owner = found
        else:
            raise CallFailed(f"signer {quote(signer)} is neither a key of {record.did} nor of one of its controllers"
                             + (f" ({', '.join(record.controllers)})" if record.controllers else ""))
        key = owner.get_key(fragment)
        if key is None or fragment not in owner.relationships.get("capabilityInvocation", ()):
            raise CallFailed(f"signer {quote(signer)} is not a capabilityInvocation key of {owner.did}: it may not "
                             f"change {record.did}")
        self._check_signature(env, record.did, op, payload, record.seq, (fragment, key[0], key[1]), signature)

    def _check_signature(self, env: BlockEnv, did: str, op: str, payload: Any, seq: int,
                         key: tuple[str, str, bytes], signature: Any) -> None:
        suite: Suite = get_suite(KEY_TYPES[key[1]])
        message = compute_op_sign_bytes(env.rules.chain_id, did, op, payload, seq)
        if type(signature) is not bytes or not suite.verify(key[2], message, signature):
            raise CallFailed(f"the signature of key {key[0]} does not verify for {op} of {did} at sequence {seq} on "
                             f"chain {quote(env.rules.chain_id)}")


def _fields(record: DidRecord) -> dict[str, Any]:
    return {"did": record.did, "keys": record.keys, "controllers": record.controllers,
            "relationships": record.relationships, "services": record.services, "seq": record.seq,
            "created": record.created, "updated": record.updated, "deactivated": record.deactivated}


def compute_op_signature(suite: Suite, private_key: bytes, chain_id: str, did: str, op: str, payload: Any,
                         seq: int) -> bytes:
    """A DID key's signature of an operation (SDK side)."""
    return suite.sign(private_key, compute_op_sign_bytes(chain_id, did, op, payload, seq))


def get_status_bit(chunk: bytes | None, index: int) -> int:
    """Entry ``index`` of a status list, given the stored chunk that holds it (None = all zero)."""
    if chunk is None:
        return 0
    offset = index % (STATUS_CHUNK_BYTES * 8)
    return (chunk[offset // 8] >> (7 - offset % 8)) & 1


__all__ = [
    "DID_MODULE",
    "DID_NAMESPACE",
    "KEY_TYPES",
    "STATUS_CHUNK_BYTES",
    "STATUS_LIST_BITS",
    "DidModule",
    "DidRecord",
    "compute_did",
    "compute_did_key",
    "compute_document",
    "compute_op_sign_bytes",
    "compute_op_signature",
    "compute_status_key",
    "get_did",
    "get_status_bit",
    "is_did",
]
