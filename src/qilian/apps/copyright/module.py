"""The ``copyright`` module: registration of works, transfers of rights, licence grants and disputes (版权保护).

A work is registered by an organisation (the sender's) with its content digest(s), title, authors, a creation
claim and licence terms from a small vocabulary plus free text; it gets the next registration number. The same
content registered again by another organisation is recorded as a **later claim** naming the earlier
registrations — never silently as first; by the same organisation it is refused. Only a key of the holder
organisation (the transaction's sender) transfers the rights or grants licences; a dispute flag, raised and
cleared under the ``copyright.dispute`` policy (give it to the arbitration organisation through governance),
freezes transfers and grants while it stands.

State (namespace ``app:copyright``): ``w`` ‖ n (8 bytes) → the work record (with ``n``/``head``, the hash chain
over its history); ``e`` ‖ k (4 bytes) ‖ n (8 bytes) → ``[entry_hash, tx_hash, height]``; ``d`` ‖ digest → the
registration numbers of that digest, oldest first; ``N`` → the count. Pure code."""

from __future__ import annotations

from typing import Any, ClassVar, Final

from qilian.apps.base import (
    MAX_FREE_TEXT,
    ZERO_HEAD,
    compute_chain_head,
    get_int,
    get_record,
    get_text,
    process_put_record,
)
from qilian.execution.chain import ChainRules, MemberInfo, TxRejected
from qilian.execution.env import BlockEnv, CallFailed, Outcome, TxCall
from qilian.execution.messages import quote
from qilian.execution.modules.base import Module
from qilian.types.codec import decode_raw, encode_trusted
from qilian.types.core import Event, Transaction

COPYRIGHT_MODULE: Final = "copyright"
COPYRIGHT_NAMESPACE: Final = "app:copyright"
DOMAIN_COPYRIGHT: Final = b"QILIAN/COPYRIGHT/1\x00"
"""Prefix of every history entry hash of a work."""
LICENCE_TERMS: Final = ("all-rights-reserved", "cc-by", "cc-by-sa", "cc-by-nc", "cc-by-nd", "cc0", "custom")
"""The controlled vocabulary of licence terms (free text goes beside it)."""
GRANT_KINDS: Final = ("exclusive", "non-exclusive")
WORLDWIDE: Final = "worldwide"
MAX_DIGESTS: Final = 16
"""Most content digests of one work (e.g. several files or renditions)."""
MAX_AUTHORS: Final = 32
"""Most authors of one work."""
MAX_GRANTS: Final = 256
"""Most licence grants recorded on one work."""
MAX_SAME_CONTENT: Final = 64
"""Most registrations (the first and later claims) of one digest."""
MAX_WORK_EVENTS: Final = 1_000
"""Most history entries of one work."""

RESOURCES: Final = {"register": "copyright.register", "transfer": "copyright.transfer",
                    "license": "copyright.license", "dispute": "copyright.dispute", "clear": "copyright.dispute"}
WORK_FIELDS: Final = frozenset({"title", "digests", "authors", "created", "claims", "licence"})


def compute_work_key(number: int) -> bytes:
    return b"w" + number.to_bytes(8, "big")


def compute_entry_key(number: int, index: int) -> bytes:
    return b"e" + index.to_bytes(4, "big") + number.to_bytes(8, "big")


def compute_digest_key(digest: bytes) -> bytes:
    return b"d" + digest


COUNT_KEY: Final = b"N"


def format_number(number: int) -> str:
    """A registration number as people write it: ``QC-00000042``."""
    return f"QC-{number:08d}"


def parse_number(value: Any) -> int:
    """A registration number given as 42 or ``QC-00000042``; raises CallFailed."""
    if type(value) is str and value.startswith("QC-") and value[3:].isdigit() and value[3:].isascii():
        value = int(value[3:])
    return get_int(value, "registration number", 1, 2**63 - 1)


def compute_entry_hash(hash_fn: Any, method: str, args: list[Any]) -> bytes:
    """The history entry of a call: the hash of its method and signed arguments."""
    return hash_fn(DOMAIN_COPYRIGHT + encode_trusted([method, *args]))


def get_work(get: Any, number: int) -> dict[str, Any] | None:
    """A work's record."""
    return get_record(get, COPYRIGHT_NAMESPACE, compute_work_key(number))


def get_registrations(get: Any, digest: bytes) -> list[int]:
    """Registration numbers of a digest, oldest first."""
    raw = get(COPYRIGHT_NAMESPACE, compute_digest_key(digest))
    return [] if raw is None else list(decode_raw(raw))


def get_entries(get: Any, number: int, count: int) -> list[list[Any]]:
    """The first ``count`` history entries ``[entry_hash, tx_hash, height]`` of a work."""
    out = []
    for k in range(count):
        raw = get(COPYRIGHT_NAMESPACE, compute_entry_key(number, k))
        if raw is not None:
            out.append(decode_raw(raw))
    return out


def check_work(work: Any) -> dict[str, Any]:
    """Static checks of a registration; returns the work or raises CallFailed naming the field."""
    if type(work) is not dict:
        raise CallFailed(f"a work is a map of {', '.join(sorted(WORK_FIELDS))}")
    for k in work:
        if k not in WORK_FIELDS:
            raise CallFailed(f"a work has no field {quote(k)} (fields: {', '.join(sorted(WORK_FIELDS))})")
    for k in ("title", "digests", "authors", "licence"):
        if k not in work:
            raise CallFailed(f"a work needs {k}")
    get_text(work["title"], "title")
    digests = work["digests"]
    if type(digests) is not list or not 1 <= len(digests) <= MAX_DIGESTS:
        raise CallFailed(f"digests must be a list of 1..{MAX_DIGESTS} content digests")
    for d in digests:
        if type(d) is not bytes or not 16 <= len(d) <= 64:
            raise CallFailed("each digest is 16..64 bytes (e.g. the SM3 or SHA-256 of the file)")
    if len(set(digests)) != len(digests):
        raise CallFailed("a digest is listed twice")
    authors = work["authors"]
    if type(authors) is not list or not 1 <= len(authors) <= MAX_AUTHORS:
        raise CallFailed(f"authors must be a list of 1..{MAX_AUTHORS} names")
    for i, a in enumerate(authors):
        get_text(a, f"authors[{i}]")
    get_text(work.get("created", ""), "created", 64, empty=True)
    get_text(work.get("claims", ""), "claims", MAX_FREE_TEXT, empty=True)
    licence = work["licence"]
    if type(licence) is not dict or set(licence) - {"terms", "text"} or "terms" not in licence:
        raise CallFailed('licence must be {"terms": …, "text": …}')
    if licence["terms"] not in LICENCE_TERMS:
        raise CallFailed(f"licence terms {quote(licence['terms'])} is not one of {', '.join(LICENCE_TERMS)} "
                         f"(put anything else in licence text with terms custom)")
    get_text(licence.get("text", ""), "licence text", MAX_FREE_TEXT, empty=True)
    return work


def check_grant(grant: Any) -> dict[str, Any]:
    """Static checks of a licence grant ``{licensee, kind, territory, from, to, terms}`` (periods in heights)."""
    keys = {"licensee", "kind", "territory", "from", "to", "terms"}
    if type(grant) is not dict or set(grant) != keys:
        raise CallFailed(f"a grant is a map of exactly {', '.join(sorted(keys))}")
    get_text(grant["licensee"], "licensee")
    if grant["kind"] not in GRANT_KINDS:
        raise CallFailed(f"grant kind {quote(grant['kind'])} is not exclusive or non-exclusive")
    territory = get_text(grant["territory"], "territory", 64)
    if territory != WORLDWIDE and not (territory.isascii() and territory.isupper() and territory.isalpha()
                                       and len(territory) == 2):
        raise CallFailed(f"territory {quote(territory)} is an ISO 3166 country code (CN, HK …) or worldwide")
    start = get_int(grant["from"], "from (height)", 0, 2**63 - 1)
    get_int(grant["to"], "to (height)", start, 2**63 - 1)
    get_text(grant["terms"], "terms", MAX_FREE_TEXT, empty=True)
    return grant


def is_overlapping(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two grants cover a common place and time."""
    places = a["territory"] == b["territory"] or WORLDWIDE in (a["territory"], b["territory"])
    return places and a["from"] <= b["to"] and b["from"] <= a["to"]


def check_args(method: str, args: tuple[Any, ...]) -> None:
    """Static checks of a call's arguments; raises CallFailed."""
    if method == "register":
        check_work(args[0])
        return
    parse_number(args[0])
    if method == "transfer":
        get_text(args[1], "new holder organisation")
        get_text(args[2], "note", MAX_FREE_TEXT, empty=True)
    elif method == "license":
        check_grant(args[1])
    else:
        get_text(args[1], "reason" if method == "dispute" else "resolution", MAX_FREE_TEXT)


class CopyrightModule(Module):
    """Works, rights, licences and disputes; see the module docstring."""

    name = COPYRIGHT_MODULE
    version = 1
    methods: ClassVar = RESOURCES
    arity: ClassVar = {"register": (1,), "transfer": (3,), "license": (2,), "dispute": (2,), "clear": (2,)}

    def check_tx(self, rules: ChainRules, member: MemberInfo, tx: Transaction) -> None:
        super().check_tx(rules, member, tx)
        method, args = tx.body.method, tx.body.args
        if len(args) not in self.arity[method]:
            raise TxRejected("bad_args", f"copyright.{method} takes {self.arity[method][0]} argument(s), got "
                                         f"{len(args)}")
        try:
            check_args(method, args)
        except CallFailed as exc:
            raise TxRejected("bad_args", f"copyright.{method}: {exc}") from None

    def execute(self, env: BlockEnv, call: TxCall) -> Outcome:
        method, args = call.method, call.args
        if method not in RESOURCES:
            raise CallFailed(f"copyright has no method {quote(method)}")
        if len(args) not in self.arity[method]:
            raise CallFailed(f"copyright.{method} takes {self.arity[method][0]} argument(s), got {len(args)}")
        check_args(method, args)
        env.process_require(RESOURCES[method], (call.member.to_approver(),))
        org = call.member.organisation
        get = env.state.get
        entry = compute_entry_hash(env.rules.suite.hash, method, list(args))
        if method == "register":
            work = args[0]
            number = int.from_bytes(get(COPYRIGHT_NAMESPACE, COUNT_KEY) or b"\x00", "big") + 1
            prior: list[int] = []
            for d in work["digests"]:
                regs = get_registrations(get, d)
                for n in regs:
                    other = get_work(get, n)
                    if other is not None and other["registrant"] == org:
                        raise CallFailed(f"this content is already registered by {org} as {format_number(n)}")
                    if n not in prior:
                        prior.append(n)
                if len(regs) >= MAX_SAME_CONTENT:
                    raise CallFailed(f"this content has {MAX_SAME_CONTENT} registrations, the limit")
                env.state.put(COPYRIGHT_NAMESPACE, compute_digest_key(d), encode_trusted([*regs, number]))
            env.state.put(COPYRIGHT_NAMESPACE, COUNT_KEY, number.to_bytes(8, "big"))
            rec: dict[str, Any] = {
                "number": number, "work": work, "registrant": org, "holder": org, "registered": env.height,
                "registered_ms": env.time_ms, "status": "later_claim" if prior else "first",
                "prior": sorted(prior), "disputed": False, "dispute": "", "grants": [], "n": 0, "head": ZERO_HEAD}
            result: dict[str, Any] = {"number": number, "id": format_number(number), "status": rec["status"],
                                      "prior": [format_number(n) for n in sorted(prior)]}
        else:
            number = parse_number(args[0])
            found = get_work(get, number)
            if found is None:
                raise CallFailed(f"no registration {format_number(number)}")
            rec = found
            if method in ("transfer", "license"):
                if rec["holder"] != org:
                    raise CallFailed(f"{format_number(number)} is held by {rec['holder']}; only a key of the holder "
                                     f"may {'transfer it' if method == 'transfer' else 'grant licences'} "
                                     f"(sender is of {org})")
                if rec["disputed"]:
                    raise CallFailed(f"{format_number(number)} is disputed ({rec['dispute']}): no transfer or "
                                     f"grant until the dispute is cleared")
            if method == "transfer":
                to = args[1]
                if to not in env.rules.org_names:
                    raise CallFailed(f"{quote(to)} is not an organisation of this chain")
                if to == org:
                    raise CallFailed(f"{org} already holds {format_number(number)}")
                rec["holder"] = to
                result = {"number": number, "holder": to}
            elif method == "license":
                grant = dict(args[1])
                if grant["licensee"] not in env.rules.org_names:
                    raise CallFailed(f"licensee {quote(grant['licensee'])} is not an organisation of this chain")
                if grant["to"] < env.height:
                    raise CallFailed(f"the grant ends at height {grant['to']}, before the current height "
                                     f"{env.height}")
                if len(rec["grants"]) >= MAX_GRANTS:
                    raise CallFailed(f"{format_number(number)} has {MAX_GRANTS} grants, the limit")
                for g in rec["grants"]:
                    if is_overlapping(g, grant) and "exclusive" in (g["kind"], grant["kind"]) and \
                            g["to"] >= env.height:
                        raise CallFailed(f"conflicts with the {g['kind']} grant to {g['licensee']} for "
                                         f"{g['territory']}, heights {g['from']}..{g['to']}")
                grant["granted"] = env.height
                rec["grants"] = [*rec["grants"], grant]
                result = {"number": number, "grant": len(rec["grants"])}
            elif method == "dispute":
                if rec["disputed"]:
                    raise CallFailed(f"{format_number(number)} is already disputed ({rec['dispute']})")
                rec["disputed"], rec["dispute"] = True, args[1]
                result = {"number": number, "disputed": True}
            else:
                if not rec["disputed"]:
                    raise CallFailed(f"{format_number(number)} is not disputed")
                rec["disputed"], rec["dispute"] = False, ""
                result = {"number": number, "disputed": False}
        if rec["n"] >= MAX_WORK_EVENTS:
            raise CallFailed(f"{format_number(number)} has {MAX_WORK_EVENTS} history entries, the limit")
        env.state.put(COPYRIGHT_NAMESPACE, compute_entry_key(number, rec["n"]),
                      encode_trusted([entry, call.tx_hash, env.height]))
        rec["head"] = compute_chain_head(env.rules.suite.hash, rec["head"], entry, call.tx_hash)
        rec["n"] += 1
        process_put_record(env.state, COPYRIGHT_NAMESPACE, compute_work_key(number), rec)
        return Outcome(result, (Event(COPYRIGHT_MODULE, method, {"number": number, "entry": entry}),))


__all__ = ["COPYRIGHT_MODULE", "COPYRIGHT_NAMESPACE", "GRANT_KINDS", "LICENCE_TERMS", "CopyrightModule",
           "check_grant", "check_work", "compute_entry_hash", "compute_entry_key", "compute_work_key",
           "format_number", "get_entries", "get_registrations", "get_work", "parse_number"]
