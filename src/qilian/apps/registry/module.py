"""The ``registry`` module: government registries whose records change only by approved applications.

A registry (e.g. ``land``) names its approval policy in the policy language of :mod:`qilian.execution.policy`:
a rule over departments (organisations) × roles, e.g. ``2`` of {land-bureau, tax-bureau, notary}. An applicant
submits a change of a record (a new version: holder, attributes, document digests); the departments approve or
reject, one vote per department; the change applies in the transaction whose approval meets the policy, and is
rejected as soon as the policy can no longer be met. Every version keeps its application, with each approval's
department, signer and transaction hash (the signed transaction is provable with ``GET /txs/{hash}``).

Only what the workflow needs is on chain: identifiers, holder, short attributes and SHA-256/SM3 digests of the
documents (the documents stay with the departments). Pure code, no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.execution.policy import (
    Approver,
    Policy,
    PolicyError,
    compute_policy,
    compute_scope,
    compute_verdict,
    is_counted,
    is_reachable,
)
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Event, Transaction

REGISTRY_MODULE: Final = "registry"
"""Target of registry transactions."""
REGISTRY_NAMESPACE: Final = "app:registry"
"""``r`` ‖ name → registry; ``c`` ‖ name ‖ 0x00 ‖ record id → current record; ``h`` ‖ name ‖ 0x00 ‖ record id ‖
version (4 bytes) → that version with its application; ``a`` ‖ id (8 bytes) → application; ``next`` → next
application id; ``p`` ‖ name → pending application ids."""
MAX_NAME: Final = 32
"""Longest registry name or record identifier."""
MAX_ATTRIBUTES: Final = 32
"""Attributes per record."""
MAX_ATTRIBUTE: Final = 256
"""Longest attribute key or text value (UTF-8 bytes)."""
MAX_DOCUMENTS: Final = 16
"""Document digests per record."""
MAX_PENDING: Final = 256
"""Pending applications per registry (bounds the queue a department reads)."""
MAX_NOTE: Final = 256
"""Longest approval note or rejection reason."""
PENDING: Final = "pending"
APPLIED: Final = "applied"
REJECTED: Final = "rejected"
SUPERSEDED: Final = "superseded"


def is_name(value: Any) -> bool:
    """Whether ``value`` may name a registry or a record: 1..32 ASCII letters, digits, - _ ."""
    return (type(value) is str and 1 <= len(value) <= MAX_NAME and value.isascii()
            and all(c.isalnum() or c in "-_." for c in value))


def compute_registry_key(name: str) -> bytes:
    return b"r" + name.encode()


def compute_record_key(name: str, record_id: str) -> bytes:
    return b"c" + name.encode() + b"\x00" + record_id.encode()


def compute_version_key(name: str, record_id: str, version: int) -> bytes:
    return b"h" + name.encode() + b"\x00" + record_id.encode() + version.to_bytes(4, "big")


def compute_application_key(app_id: int) -> bytes:
    return b"a" + app_id.to_bytes(8, "big")


def compute_pending_key(name: str) -> bytes:
    return b"p" + name.encode()


def _get(state: Any, key: bytes) -> Any:
    raw = state(REGISTRY_NAMESPACE, key)
    return None if raw is None else decode_raw(raw)


def get_registry(state: Any, name: str) -> dict[str, Any] | None:
    """A registry: name, owner organisation, policy ``[rule, departments, roles]``, created height."""
    return _get(state, compute_registry_key(name))


def get_record(state: Any, name: str, record_id: str) -> dict[str, Any] | None:
    """A record's current version."""
    return _get(state, compute_record_key(name, record_id))


def get_version(state: Any, name: str, record_id: str, version: int) -> dict[str, Any] | None:
    """One version of a record with the application that made it."""
    return _get(state, compute_version_key(name, record_id, version))


def get_application(state: Any, app_id: int) -> dict[str, Any] | None:
    """An application with its votes."""
    return _get(state, compute_application_key(app_id))


def get_pending(state: Any, name: str) -> list[int]:
    """Ids of a registry's pending applications, oldest first."""
    return list(_get(state, compute_pending_key(name)) or [])


def get_policy_of(registry: dict[str, Any]) -> Policy:
    """A registry's approval policy."""
    rule, orgs, roles = registry["policy"]
    return Policy(rule, tuple(orgs), tuple(roles))


def compute_change(value: Any) -> dict[str, Any]:
    """Check a change — ``{holder, attributes: {text: text|int}, documents: [digest bytes]}`` — CallFailed names
    the part at fault."""
    if type(value) is not dict or set(value) - {"holder", "attributes", "documents"} or "holder" not in value:
        raise CallFailed("a change is a map {holder, attributes, documents}")
    holder = value["holder"]
    if type(holder) is not str or not 0 < len(holder.encode()) <= MAX_ATTRIBUTE:
        raise CallFailed(f"holder must be text of 1..{MAX_ATTRIBUTE} bytes")
    attrs = value.get("attributes", {})
    if type(attrs) is not dict or len(attrs) > MAX_ATTRIBUTES:
        raise CallFailed(f"attributes is a map of at most {MAX_ATTRIBUTES} entries")
    for k, v in attrs.items():
        if len(k.encode()) > MAX_ATTRIBUTE or not (
                (type(v) is str and len(v.encode()) <= MAX_ATTRIBUTE) or (type(v) is int and abs(v) < 2**63)):
            raise CallFailed(f"attribute {quote(k)} must be text of at most {MAX_ATTRIBUTE} bytes or an integer")
    docs = value.get("documents", [])
    if type(docs) is not list or len(docs) > MAX_DOCUMENTS or any(type(d) is not bytes or len(d) != 32 for d in docs):
        raise CallFailed(f"documents is a list of at most {MAX_DOCUMENTS} 32-byte digests (the documents stay "
                         f"off chain)")
    return {"holder": holder, "attributes": dict(attrs), "documents": list(docs)}


@dataclass(frozen=True, slots=True)
class Vote:
    """A department's decision on an application."""

    org: str
    """The department (organisation); it counts once."""
    member: str
    """The signing member's name."""
    address: str
    """The signing key's address."""
    roles: tuple[str, ...]
    """Its roles (so the policy can be re-evaluated)."""
    approve: bool
    """Approve or reject."""
    note: str
    """Why (free text, bounded)."""
    height: int
    """Height of the vote."""
    tx_hash: bytes
    """The vote's transaction: its signature is the department's, provable with the transaction's proof."""

    def to_value(self) -> dict[str, Any]:
        return {"org": self.org, "member": self.member, "address": self.address, "roles": list(self.roles),
                "approve": self.approve, "note": self.note, "height": self.height, "tx_hash": self.tx_hash}


class RegistryModule(Module):
    """Registries, applications and department approvals."""

    name = REGISTRY_MODULE
    version = 1
    methods: ClassVar = {"create": "registry.create", "submit": "registry.submit", "approve": "", "reject": ""}
    arity: ClassVar = {"create": (3, 4), "submit": (3,), "approve": (1, 2), "reject": (2,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        counts = self.arity[tx.body.method]
        if len(tx.body.args) not in counts:
            raise TxRejected("bad_args", f"registry.{tx.body.method} takes {' or '.join(map(str, counts))} "
                                         f"argument(s), got {len(tx.body.args)}")

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        if call.method not in self.methods or len(call.args) not in self.arity[call.method]:
            raise CallFailed(f"registry has no method {quote(call.method)} taking {len(call.args)} argument(s)")
        if call.method == "create":
            return self.process_create(env, call)
        if call.method == "submit":
            return self.process_submit(env, call)
        return self.process_vote(env, call, call.method == "approve")

    def process_create(self, env: BlockEnv, call: TxCall) -> Outcome:
        """create(name, rule, departments[, roles]): roles default to admin and member."""
        name, rule, departments = call.args[:3]
        roles = call.args[3] if len(call.args) == 4 else ["admin", "member"]
        if not is_name(name):
            raise CallFailed(f"registry name {quote(name)} must be 1..{MAX_NAME} letters, digits, - _ .")
        if type(departments) is not list or not departments:
            raise CallFailed("a registry names its approving departments (organisations)")
        try:
            policy = compute_policy(rule, departments, roles, env.rules.org_names)
        except PolicyError as exc:
            raise CallFailed(f"registry {name} policy: {exc}") from None
        if policy.rule in ("SELF", "FORBIDDEN"):
            raise CallFailed("a registry policy is ANY, ALL, MAJORITY, n or a/b over its departments")
        verdict_needed = compute_verdict(name, policy, (), env.rules.org_names)
        if verdict_needed.needed > len(policy.orgs):
            raise CallFailed(verdict_needed.message)
        env.process_require("registry.create", (call.member.to_approver(),))
        if get_registry(env.state.get, name) is not None:
            raise CallFailed(f"registry {name} exists already")
        reg = {"name": name, "owner_org": call.member.organisation, "policy": policy.to_value(),
               "text": policy.describe(), "created": env.height}
        env.state.put(REGISTRY_NAMESPACE, compute_registry_key(name), encode_trusted(reg))
        return Outcome(reg, (Event(REGISTRY_MODULE, "RegistryCreated", {"name": name, "policy": policy.describe()}),))

    def process_submit(self, env: BlockEnv, call: TxCall) -> Outcome:
        """submit(registry, record_id, change): a pending application against the record's current version."""
        name, record_id, change_value = call.args
        reg = self._registry(env, name)
        if not is_name(record_id):
            raise CallFailed(f"record id {quote(record_id)} must be 1..{MAX_NAME} letters, digits, - _ .")
        change = compute_change(change_value)
        env.process_require("registry.submit", (call.member.to_approver(),))
        pending = get_pending(env.state.get, name)
        if len(pending) >= MAX_PENDING:
            raise CallFailed(f"registry {name} has {MAX_PENDING} pending applications; decide some first")
        current = get_record(env.state.get, name, record_id)
        raw = env.state.get(REGISTRY_NAMESPACE, b"next")
        app_id = 1 if raw is None else int(decode_raw(raw))
        env.state.put(REGISTRY_NAMESPACE, b"next", encode_trusted(app_id + 1))
        application = {"id": app_id, "registry": name, "record": record_id, "change": change,
                       "base_version": 0 if current is None else current["version"], "applicant": call.sender,
                       "applicant_org": call.member.organisation, "created": env.height, "tx_hash": call.tx_hash,
                       "status": PENDING, "votes": [], "decided": 0, "result": ""}
        env.state.put(REGISTRY_NAMESPACE, compute_application_key(app_id), encode_trusted(application))
        env.state.put(REGISTRY_NAMESPACE, compute_pending_key(name), encode_trusted([*pending, app_id]))
        return Outcome({"id": app_id, "status": PENDING, "policy": reg["text"]}, (Event(REGISTRY_MODULE, "Submitted", {
            "id": app_id, "registry": name, "record": record_id, "applicant_org": call.member.organisation}),))

    def process_vote(self, env: BlockEnv, call: TxCall, approve: bool) -> Outcome:
        """approve(id[, note]) / reject(id, reason) by a department the registry's policy names."""
        app_id = call.args[0]
        note = call.args[1] if len(call.args) == 2 else ""
        if type(app_id) is not int or app_id < 1:
            raise CallFailed("an application id is a positive integer")
        if type(note) is not str or len(note.encode()) > MAX_NOTE:
            raise CallFailed(f"a note is text of at most {MAX_NOTE} bytes")
        application = get_application(env.state.get, app_id)
        if application is None:
            raise CallFailed(f"no application {app_id}")
        if application["status"] != PENDING:
            raise CallFailed(f"application {app_id} is {application['status']} (at height {application['decided']})")
        reg = self._registry(env, application["registry"])
        policy = get_policy_of(reg)
        me = call.member.to_approver()
        scope = compute_scope(policy, env.rules.org_names, None)
        if not is_counted(policy, scope, me):
            raise CallFailed(f"{me.org}/{me.name} may not decide on registry {reg['name']}: its policy is "
                             f"{policy.describe()}")
        for v in application["votes"]:
            if v["org"] == me.org:
                raise CallFailed(f"department {me.org} has already decided on application {app_id} (at height "
                                 f"{v['height']}); a department counts once")
        vote = Vote(me.org, me.name, call.sender, tuple(sorted(me.roles)), approve, note, env.height, call.tx_hash)
        votes = [*application["votes"], vote.to_value()]
        application = {**application, "votes": votes}
        events = [Event(REGISTRY_MODULE, "Approved" if approve else "Rejected", {"id": app_id, "org": me.org})]
        yes = [Vote(v["org"], v["member"], v["address"], tuple(v["roles"]), v["approve"], v["note"], v["height"],
                    v["tx_hash"]) for v in votes if v["approve"]]
        approvers = [Approver(v.org, v.member, frozenset(v.roles)) for v in yes]
        resource = f"registry {reg['name']}"
        verdict = compute_verdict(resource, policy, approvers, env.rules.org_names)
        if verdict.ok:
            application, more = self._apply(env, application, list(verdict.found))
            events.extend(more)
        else:
            undecided = [o for o in scope if o not in {v["org"] for v in votes}]
            if not is_reachable(resource, policy, approvers, undecided, env.rules.org_names):
                application = {**application, "status": REJECTED, "decided": env.height,
                               "result": f"rejected by {', '.join(v['org'] for v in votes if not v['approve'])}: "
                                         f"{verdict.message}"}
        env.state.put(REGISTRY_NAMESPACE, compute_application_key(app_id), encode_trusted(application))
        if application["status"] != PENDING:
            name = application["registry"]
            left = [i for i in get_pending(env.state.get, name) if i != app_id]
            env.state.put(REGISTRY_NAMESPACE, compute_pending_key(name), encode_trusted(left) if left else None)
        return Outcome({"id": app_id, "status": application["status"], "result": application["result"],
                        "approved_by": sorted(v.org for v in yes),
                        "rejected_by": sorted(v["org"] for v in votes if not v["approve"])}, tuple(events))

    def _apply(self, env: BlockEnv, application: dict[str, Any], approvers: list[str]
               ) -> tuple[dict[str, Any], list[Event]]:
        name, record_id = application["registry"], application["record"]
        current = get_record(env.state.get, name, record_id)
        version = 0 if current is None else current["version"]
        if version != application["base_version"]:
            return ({**application, "status": SUPERSEDED, "decided": env.height,
                     "result": f"record {record_id} changed to version {version} after this application was made "
                               f"against version {application['base_version']}; submit again"}, [])
        record = {"registry": name, "id": record_id, **application["change"], "version": version + 1,
                  "updated": env.height, "application": application["id"]}
        done = {**application, "status": APPLIED, "decided": env.height, "result": f"version {version + 1}"}
        env.state.put(REGISTRY_NAMESPACE, compute_record_key(name, record_id), encode_trusted(record))
        env.state.put(REGISTRY_NAMESPACE, compute_version_key(name, record_id, version + 1),
                      encode_trusted({"record": record, "application": done, "approvers": approvers}))
        return done, [Event(REGISTRY_MODULE, "RecordChanged", {"registry": name, "record": record_id,
                                                               "version": version + 1, "approvers": approvers})]

    def _registry(self, env: BlockEnv, name: Any) -> dict[str, Any]:
        reg = get_registry(env.state.get, name) if is_name(name) else None
        if reg is None:
            raise CallFailed(f"no registry {quote(name)}")
        return reg


__all__ = [
    "REGISTRY_MODULE",
    "REGISTRY_NAMESPACE",
    "RegistryModule",
    "compute_application_key",
    "compute_change",
    "compute_record_key",
    "compute_version_key",
    "get_application",
    "get_pending",
    "get_policy_of",
    "get_record",
    "get_registry",
    "get_version",
]
