"""Generate tests/vectors/encoding.json: canonical-encoding, identity and Merkle vectors for other SDKs.

Run ``PYTHONPATH=src python3 tests/vectors/make_vectors.py`` to rewrite the file, ``--check`` to compare the
code's output with the stored file, or ``--examples`` to print the annotated worked examples of
docs/spec/encoding.md. tests/unit/test_codec_vectors.py calls :func:`build_vectors` and fails on any difference,
so a change to the encoding cannot go unnoticed.

Everything here is deterministic except SM2 signatures, which are randomised (a fresh k per signature): the
stored SM2 signatures are kept as long as they still verify, so regenerating the file is idempotent, and the
test only checks that they verify.

Values in the JSON use a tagged form, so that 64-bit integers and byte strings survive any JSON parser:
``null``/``true``/``false``, a JSON string for text, ``{"int": "<decimal>"}``, ``{"bin": "<hex>"}``, a JSON
array for an array and ``{"map": {key: value}}`` for a map (JSON object order is irrelevant: encoders sort).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qilian.crypto import get_suite, merkle
from qilian.types import codec
from qilian.types.core import (
    BLOCK_VERSION,
    PRECOMMIT,
    STATUS_FAILED,
    STATUS_OK,
    Block,
    BlockHeader,
    ChainParams,
    Commit,
    CommitSig,
    Event,
    Evidence,
    Genesis,
    Member,
    Organisation,
    Receipt,
    Transaction,
    TxBody,
    Validator,
    ValidatorSet,
    Vote,
    compute_block_id,
    compute_commit_hash,
    compute_signed_tx_hash,
    compute_tx_hash,
    compute_tx_sign_bytes,
    compute_vote_sign_bytes,
)

VECTORS_PATH = Path(__file__).with_name("encoding.json")

HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sm3": lambda b: hashlib.new("sm3", b).digest(),
}

# RFC 8032 §7.1 TEST 1 key pair, so the Ed25519 vectors can be cross-checked with any Ed25519 library.
ED25519_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
# An SM2 private key d (big-endian); any value in [1, n-2] is a key.
SM2_PRIVATE_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e20")


# -- tagged JSON -----------------------------------------------------------------------------------------------


def to_tagged(value: Any) -> Any:
    """A codec value as tagged JSON (see the module docstring)."""
    if value is None or type(value) is bool or type(value) is str:
        return value
    if type(value) is int:
        return {"int": str(value)}
    if type(value) is bytes:
        return {"bin": value.hex()}
    if type(value) in (list, tuple):
        return [to_tagged(v) for v in value]
    if type(value) is dict:
        return {"map": {k: to_tagged(v) for k, v in value.items()}}
    raise TypeError(f"not a codec value: {type(value).__name__}")


def from_tagged(obj: Any) -> Any:
    """Inverse of :func:`to_tagged`."""
    if obj is None or type(obj) is bool or type(obj) is str:
        return obj
    if type(obj) is list:
        return [from_tagged(v) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        ((tag, inner),) = obj.items()
        if tag == "int":
            return int(inner)
        if tag == "bin":
            return bytes.fromhex(inner)
        if tag == "map":
            return {k: from_tagged(v) for k, v in inner.items()}
    raise ValueError(f"not a tagged value: {obj!r}")


# -- plain values ----------------------------------------------------------------------------------------------

VALUES: list[tuple[str, Any]] = [
    ("nil", None),
    ("false", False),
    ("true", True),
    ("int 0", 0),
    ("int 127 (largest positive fixint)", 127),
    ("int 128 (smallest uint8)", 128),
    ("int 255", 255),
    ("int 256 (smallest uint16)", 256),
    ("int 65535", 65535),
    ("int 65536 (smallest uint32)", 65536),
    ("int 2**32-1", 2**32 - 1),
    ("int 2**32 (smallest uint64)", 2**32),
    ("int 2**63 (uint64 only)", 2**63),
    ("int 2**64-1 (largest)", 2**64 - 1),
    ("int -1", -1),
    ("int -32 (smallest negative fixint)", -32),
    ("int -33 (largest int8)", -33),
    ("int -128", -128),
    ("int -129 (largest int16)", -129),
    ("int -32768", -32768),
    ("int -32769 (largest int32)", -32769),
    ("int -2**31", -(2**31)),
    ("int -2**31-1 (largest int64)", -(2**31) - 1),
    ("int -2**63 (smallest)", -(2**63)),
    ("empty text", ""),
    ("text", "hello"),
    ("text, 31 bytes (largest fixstr)", "a" * 31),
    ("text, 32 bytes (smallest str8)", "a" * 32),
    ("text, 256 bytes (smallest str16)", "b" * 256),
    ("text, non-ASCII (length counts UTF-8 bytes)", "齐链"),
    ("text, astral plane", "\U0001f600"),
    ("empty bytes (bin8, never fixstr)", b""),
    ("bytes", b"\x00\x01\xff"),
    ("bytes, 256 (smallest bin16)", bytes(256)),
    ("empty array", []),
    ("array of 15 (largest fixarray)", list(range(15))),
    ("array of 16 (smallest array16)", list(range(16))),
    ("nested arrays", [[], [[]], [1, [2, [3]]]]),
    ("empty map", {}),
    ("map, keys sorted by UTF-8 bytes", {"b": 1, "a": 2, "aa": 3, "B": 4, "é": 5, "": 6}),
    (
        "map, UTF-8 order differs from UTF-16 order",
        {"\uff61": "U+FF61", "\U0001f600": "U+1F600", "\u00e9": "U+00E9"},
    ),
    ("map of 16 (smallest map16)", {f"k{i:02d}": i for i in range(16)}),
    ("mixed", {"amount": 1_000_000, "memo": "付款", "tags": ["a", "b"], "raw": b"\xde\xad", "ok": True, "x": None}),
]

# Byte strings every decoder must refuse, with the reason.
REJECTED: list[tuple[str, str]] = [
    ("d005", "int 5 as int8: non-negative integers use the unsigned/fixint forms"),
    ("cc05", "int 5 as uint8: 0..127 is a positive fixint"),
    ("cd0010", "int 16 as uint16"),
    ("cd00ff", "int 255 as uint16: 128..255 is uint8"),
    ("ce0000ffff", "int 65535 as uint32"),
    ("cf00000000ffffffff", "int 2**32-1 as uint64"),
    ("d0ff", "int -1 as int8: -32..-1 is a negative fixint"),
    ("d1ff80", "int -128 as int16"),
    ("d9026869", "text 'hi' as str8: fewer than 32 bytes is a fixstr"),
    ("da000568656c6c6f", "text 'hello' as str16"),
    ("c5000100", "1 byte as bin16"),
    ("dc000100", "array of 1 as array16"),
    ("de0001a161c0", "map of 1 as map16"),
    ("82a162c0a161c0", "map keys out of order ('b' before 'a')"),
    ("82a161c0a161c0", "duplicate map key"),
    ("81c40161c0", "bin map key"),
    ("8101c0", "integer map key"),
    ("c000", "trailing byte after a complete value"),
    ("", "empty input"),
    ("ca3f800000", "float32"),
    ("cb3ff0000000000000", "float64"),
    ("d40100", "fixext1"),
    ("c7010100", "ext8"),
    ("d6ff00000000", "timestamp extension (ext type -1)"),
    ("c1", "reserved byte 0xc1"),
    ("a180", "text that is not UTF-8 (a lone continuation byte)"),
    ("a3eda080", "UTF-8-encoded surrogate (U+D800)"),
    ("a2c080", "overlong UTF-8"),
    ("92c0", "truncated array"),
    ("a361626300", "trailing byte after text"),
    ("91" * 33 + "c0", "nested deeper than MAX_DEPTH (a value at depth 33)"),
]


# -- structures ------------------------------------------------------------------------------------------------


def _h(label: str) -> bytes:
    """A fixed 32-byte stand-in hash, distinct per label."""
    return hashlib.sha256(label.encode()).digest()


def build_examples() -> dict[str, Any]:
    """The keys, bodies and structures the vectors and the spec's worked examples are made of."""
    ed = get_suite("ed25519")
    ed_pk = ed.get_public_key(ED25519_SEED)
    body = TxBody(
        chain_id="qilian-test",
        sender=ed_pk,
        nonce=1,
        expires_at=100,
        to="kv",
        method="put",
        args=(b"greeting", "你好"),
    )
    tx = Transaction(body, ed.sign(ED25519_SEED, compute_tx_sign_bytes(compute_tx_hash(ed, body))))
    body2 = TxBody("qilian-test", ed_pk, 2, 100, "kv", "nope", (b"greeting",))
    tx2 = Transaction(body2, ed.sign(ED25519_SEED, compute_tx_sign_bytes(compute_tx_hash(ed, body2))))
    validator_address = ed.compute_address(ed_pk)
    vset = ValidatorSet((Validator(validator_address, ed_pk, 10),))
    # Two precommits of height 1, round 0 for different blocks by the one validator: equivocation evidence.
    twin = [Vote(PRECOMMIT, 1, 0, _h(name), validator_address,
                 ed.sign(ED25519_SEED, compute_vote_sign_bytes("qilian-test", PRECOMMIT, 1, 0, _h(name))))
            for name in ("block 1", "block 1 (twin)")]
    evidence = Evidence(*sorted(twin, key=lambda v: v.block_id))
    header = BlockHeader(
        version=BLOCK_VERSION,
        chain_id="qilian-test",
        height=2,
        time_ms=1_700_000_001_000,
        prev_block_id=_h("block 1"),
        last_commit_hash=_h("commit 1"),
        txs_root=merkle.compute_root(ed.hash, [compute_signed_tx_hash(ed, tx), compute_signed_tx_hash(ed, tx2)]),
        tx_count=2,
        state_root=_h("state after block 1"),
        receipts_root=_h("receipts of block 1"),
        validators_hash=vset.compute_hash(ed),
        next_validators_hash=vset.compute_hash(ed),
        proposer=validator_address,
        evidence_hash=merkle.compute_root(ed.hash, [evidence.encode()]),
    )
    block_id = compute_block_id(ed, header)
    vote_sign_bytes = compute_vote_sign_bytes("qilian-test", PRECOMMIT, 2, 0, block_id)
    vote_sig = ed.sign(ED25519_SEED, vote_sign_bytes)
    commit = Commit(2, 0, block_id, (CommitSig(validator_address, vote_sig),))
    receipt_ok = Receipt(
        compute_tx_hash(ed, body), STATUS_OK, "", 0, None,
        (Event("kv", "put", {"key": b"greeting", "size": 6}),),
    )
    receipt_failed = Receipt(compute_tx_hash(ed, body2), STATUS_FAILED, "kv has no method 'nope'", 0, None, ())
    genesis = Genesis(
        chain_id="qilian-test",
        suite="ed25519",
        genesis_time_ms=1_700_000_000_000,
        organisations=(Organisation("Port Authority", (Member("node0", ed_pk, ("admin", "validator")),)),),
        validators=vset,
        params=ChainParams(),
    )
    return {
        "suite": ed,
        "body": body,
        "tx": tx,
        "body2": body2,
        "tx2": tx2,
        "header": header,
        "evidence": evidence,
        "block_id": block_id,
        "vote_sign_bytes": vote_sign_bytes,
        "structures": [
            ("TxBody", body),
            ("Transaction", tx),
            ("Event", receipt_ok.events[0]),
            ("Receipt (ok, with an event)", receipt_ok),
            ("Receipt (failed)", receipt_failed),
            ("BlockHeader (height 2)", header),
            (
                "BlockHeader (height 1: empty prev_block_id and last_commit_hash)",
                BlockHeader(BLOCK_VERSION, "qilian-test", 1, 1_700_000_000_000, b"", b"",
                            merkle.compute_root(ed.hash, []), 0, bytes(32), merkle.compute_root(ed.hash, []),
                            vset.compute_hash(ed), vset.compute_hash(ed), validator_address,
                            merkle.compute_root(ed.hash, [])),
            ),
            ("CommitSig", commit.signatures[0]),
            ("Commit", commit),
            ("Evidence (two precommits of height 1, round 0)", evidence),
            ("Block (height 2)", Block(header, (tx, tx2), commit, (evidence,))),
            ("Vote (precommit)", Vote(PRECOMMIT, 2, 0, block_id, validator_address, vote_sig)),
            ("Vote (prevote for nil)", Vote(1, 3, 1, b"", validator_address, ed.sign(
                ED25519_SEED, compute_vote_sign_bytes("qilian-test", 1, 3, 1, b"")))),
            ("Validator", vset.validators[0]),
            ("ValidatorSet", vset),
            ("Member", genesis.organisations[0].members[0]),
            ("Organisation", genesis.organisations[0]),
            ("ChainParams (defaults)", genesis.params),
            ("Genesis", genesis),
        ],
        "receipts": [receipt_ok, receipt_failed],
    }


def _structure_vector(name: str, obj: Any) -> dict[str, Any]:
    encoded = obj.encode()
    return {
        "name": name,
        "type": type(obj).__name__,
        "wire": to_tagged(obj.to_wire()),
        "hex": encoded.hex(),
        "sha256": HASHES["sha256"](encoded).hex(),
        "sm3": HASHES["sm3"](encoded).hex(),
    }


def _sm2_identity(previous: dict[str, Any] | None) -> dict[str, Any]:
    sm2 = get_suite("sm2")
    pk = sm2.get_public_key(SM2_PRIVATE_KEY)
    body = TxBody("qilian-sm2", pk, 7, 500, "kv", "put", (b"k", b"v"))
    tx_hash = compute_tx_hash(sm2, body)
    sign_bytes = compute_tx_sign_bytes(tx_hash)
    signature = bytes.fromhex(previous["signature"]) if previous else b""
    if not sm2.verify(pk, sign_bytes, signature):
        signature = sm2.sign(SM2_PRIVATE_KEY, sign_bytes)
    return {
        "suite": "sm2",
        "private_key": SM2_PRIVATE_KEY.hex(),
        "public_key": pk.hex(),
        "address": sm2.compute_address(pk).hex(),
        "body_hex": body.encode().hex(),
        "tx_hash": tx_hash.hex(),
        "sign_bytes": sign_bytes.hex(),
        "signature": signature.hex(),
        "signature_is_randomised": True,
        "transaction_hex": Transaction(body, signature).encode().hex(),
        "signed_tx_hash": compute_signed_tx_hash(sm2, Transaction(body, signature)).hex(),
    }


def _merkle_vectors() -> list[dict[str, Any]]:
    out = []
    for hash_name, fn in HASHES.items():
        for n in (0, 1, 2, 3, 4, 5, 7, 9):
            leaves = [bytes([0x61 + i]) for i in range(n)]  # b"a", b"b", …
            out.append({
                "hash": hash_name,
                "leaves": [leaf.hex() for leaf in leaves],
                "root": merkle.compute_root(fn, leaves).hex(),
                "proofs": [
                    {"index": p.index, "size": p.size, "path": [x.hex() for x in p.path]}
                    for p in (merkle.compute_proof(fn, leaves, i) for i in range(n))
                ],
            })
    return out


def build_vectors(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """All vectors as a JSON-ready dict; ``previous`` (the stored file) supplies the SM2 signature to keep."""
    ex = build_examples()
    ed = ex["suite"]
    body, tx, header = ex["body"], ex["tx"], ex["header"]
    tx_hashes = [compute_tx_hash(ed, body), compute_tx_hash(ed, ex["body2"])]
    signed_hashes = [compute_signed_tx_hash(ed, tx), compute_signed_tx_hash(ed, ex["tx2"])]
    commit = next(o for n, o in ex["structures"] if n == "Commit")
    ed_pk = body.sender
    return {
        "description": "Qilian canonical encoding test vectors; see docs/spec/encoding.md. "
        "Generated by tests/vectors/make_vectors.py, checked by tests/unit/test_codec_vectors.py.",
        "value_format": "null/true/false; JSON string = text; {\"int\": decimal string}; {\"bin\": hex}; "
        "JSON array = array; {\"map\": {key: value}} = map (encoders sort the keys)",
        "constants": {
            "MAX_DEPTH": codec.MAX_DEPTH,
            "MAX_MESSAGE_BYTES": codec.MAX_MESSAGE_BYTES,
            "MIN_INT": str(codec.MIN_INT),
            "MAX_INT": str(codec.MAX_INT),
            "DOMAIN_TX": b"QILIAN/TX/1\x00".hex(),
            "DOMAIN_VOTE": b"QILIAN/VOTE/1\x00".hex(),
        },
        "values": [{"name": n, "value": to_tagged(v), "hex": codec.encode(v).hex()} for n, v in VALUES],
        "rejected": [{"hex": h, "why": why} for h, why in REJECTED],
        "structures": [_structure_vector(n, o) for n, o in ex["structures"]],
        "identities": {
            "ed25519": {
                "suite": "ed25519",
                "private_key": ED25519_SEED.hex(),
                "public_key": ed_pk.hex(),
                "address": ed.compute_address(ed_pk).hex(),
                "body_hex": body.encode().hex(),
                "tx_hash": tx_hashes[0].hex(),
                "sign_bytes": compute_tx_sign_bytes(tx_hashes[0]).hex(),
                "signature": tx.signature.hex(),
                "signature_is_randomised": False,
                "transaction_hex": tx.encode().hex(),
                "signed_tx_hash": signed_hashes[0].hex(),
            },
            "sm2": _sm2_identity((previous or {}).get("identities", {}).get("sm2")),
            "block": {
                "suite": "ed25519",
                "header_hex": header.encode().hex(),
                "block_id": ex["block_id"].hex(),
                "tx_hashes": [h.hex() for h in tx_hashes],
                "signed_tx_hashes": [h.hex() for h in signed_hashes],
                "txs_root": header.txs_root.hex(),
                "receipts_hex": [r.encode().hex() for r in ex["receipts"]],
                "receipts_root": merkle.compute_root(ed.hash, [r.encode() for r in ex["receipts"]]).hex(),
                "vote_sign_bytes": ex["vote_sign_bytes"].hex(),
                "commit_hex": commit.encode().hex(),
                "commit_hash": compute_commit_hash(ed, commit).hex(),
            },
        },
        "merkle": _merkle_vectors(),
    }


def load_vectors() -> dict[str, Any]:
    """The stored vectors."""
    return json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def dump(vectors: dict[str, Any]) -> str:
    """The file's exact text (stable: 1-space indent, UTF-8, trailing newline)."""
    return json.dumps(vectors, indent=1, ensure_ascii=False) + "\n"


# -- annotated examples for the spec ---------------------------------------------------------------------------


def explain(data: bytes) -> list[str]:
    """One line per MessagePack item of canonical bytes: offset, hex, meaning (for the spec's worked examples)."""
    lines: list[str] = []

    def item(pos: int, depth: int) -> int:
        b = data[pos]
        pad = "  " * depth

        def emit(n: int, what: str) -> int:
            lines.append(f"{pos:4d}  {data[pos:pos + n].hex():<26}  {pad}{what}")
            return pos + n

        if b <= 0x7F:
            return emit(1, f"positive fixint {b}")
        if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
            hl = {0xDE: 3, 0xDF: 5}.get(b, 1)
            n = b & 0x0F if hl == 1 else int.from_bytes(data[pos + 1:pos + hl], "big")
            p = emit(hl, f"map of {n}")
            for _ in range(2 * n):
                p = item(p, depth + 1)
            return p
        if 0x90 <= b <= 0x9F or b in (0xDC, 0xDD):
            hl = {0xDC: 3, 0xDD: 5}.get(b, 1)
            n = b & 0x0F if hl == 1 else int.from_bytes(data[pos + 1:pos + hl], "big")
            p = emit(hl, f"array of {n}")
            for _ in range(n):
                p = item(p, depth + 1)
            return p
        if 0xA0 <= b <= 0xBF or b in (0xD9, 0xDA, 0xDB):
            hl = {0xD9: 2, 0xDA: 3, 0xDB: 5}.get(b, 1)
            n = b & 0x1F if hl == 1 else int.from_bytes(data[pos + 1:pos + hl], "big")
            text = data[pos + hl:pos + hl + n].decode()
            return emit(hl + n, f"str ({n} bytes) {text!r}")
        if b in (0xC4, 0xC5, 0xC6):
            hl = {0xC4: 2, 0xC5: 3, 0xC6: 5}[b]
            n = int.from_bytes(data[pos + 1:pos + hl], "big")
            if n > 8:
                lines.append(f"{pos:4d}  {data[pos:pos + hl].hex():<26}  {pad}bin of {n} bytes:")
                lines.append(f"{pos + hl:4d}  {data[pos + hl:pos + hl + n].hex()}")
                return pos + hl + n
            return emit(hl + n, f"bin of {n} bytes")
        if b == 0xC0:
            return emit(1, "nil")
        if b in (0xC2, 0xC3):
            return emit(1, "true" if b == 0xC3 else "false")
        if 0xCC <= b <= 0xCF:
            n = 1 << (b - 0xCC)
            return emit(1 + n, f"uint{8 * n} {int.from_bytes(data[pos + 1:pos + 1 + n], 'big')}")
        if 0xD0 <= b <= 0xD3:
            n = 1 << (b - 0xD0)
            value = int.from_bytes(data[pos + 1:pos + 1 + n], "big", signed=True)
            return emit(1 + n, f"int{8 * n} {value}")
        if b >= 0xE0:
            return emit(1, f"negative fixint {b - 256}")
        raise ValueError(f"not canonical Qilian MessagePack at {pos}: {b:#04x}")

    end = item(0, 0)
    assert end == len(data)
    return lines


def print_examples() -> None:
    """The worked examples of docs/spec/encoding.md, from the code."""
    ex = build_examples()
    ed = ex["suite"]
    body = ex["body"]
    enc = body.encode()
    tx_hash = compute_tx_hash(ed, body)
    print("TxBody hex:", enc.hex())
    print("\n".join(explain(enc)))
    print("tx hash (sha256):", tx_hash.hex())
    print("sign bytes:", compute_tx_sign_bytes(tx_hash).hex())
    print("signature:", ex["tx"].signature.hex())
    print("Transaction hex:", ex["tx"].encode().hex())
    print("signed tx hash (sha256 of the Transaction bytes):", compute_signed_tx_hash(ed, ex["tx"]).hex())
    print("address:", ed.compute_address(body.sender).hex())
    for name, fn in HASHES.items():
        leaves = [b"a", b"b", b"c"]
        lh = [fn(b"\x00" + x) for x in leaves]
        n01 = fn(b"\x01" + lh[0] + lh[1])
        print(f"[{name}] empty root:", fn(b"").hex())
        for x, h in zip(leaves, lh, strict=True):
            print(f"[{name}] leaf {x!r}:", h.hex())
        print(f"[{name}] node(a,b):", n01.hex())
        print(f"[{name}] root(a,b,c):", merkle.compute_root(fn, leaves).hex())
        for i in range(3):
            p = merkle.compute_proof(fn, leaves, i)
            print(f"[{name}] proof {i}:", [x.hex() for x in p.path])
    print("vote sign bytes:", ex["vote_sign_bytes"].hex())
    print("\n".join(explain(ex["vote_sign_bytes"][len(b"QILIAN/VOTE/1\x00"):])))
    print("header hex:", ex["header"].encode().hex())
    print("block id:", ex["block_id"].hex())


def main(argv: list[str]) -> int:
    if "--examples" in argv:
        print_examples()
        return 0
    previous = load_vectors() if VECTORS_PATH.exists() else None
    text = dump(build_vectors(previous))
    if "--check" in argv:
        if previous is None or dump(previous) != text:
            print(f"{VECTORS_PATH} is out of date", file=sys.stderr)
            return 1
        print(f"{VECTORS_PATH} is up to date")
        return 0
    VECTORS_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
