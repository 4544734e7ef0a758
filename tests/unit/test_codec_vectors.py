"""The stored encoding vectors (tests/vectors/encoding.json) still hold, so docs/spec/encoding.md cannot drift.

Two directions: the generator run against today's code must reproduce the stored file exactly, and each stored
vector is checked on its own (decode, re-encode, hash, verify) the way another SDK would use it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from qilian.crypto import get_suite, merkle
from qilian.types import codec, core
from qilian.types.codec import CodecError

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "spec" / "encoding.md"


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("qilian_make_vectors", ROOT / "tests" / "vectors" / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GEN = _load_generator()
VECTORS = GEN.load_vectors()
HASHES = GEN.HASHES
STRUCTURES = {cls.__name__: cls for cls in (
    core.TxBody, core.Transaction, core.Event, core.Receipt, core.BlockHeader, core.CommitSig, core.Commit,
    core.Block, core.Vote, core.Evidence, core.Validator, core.ValidatorSet, core.Member, core.Organisation,
    core.ChainParams, core.Genesis,
)}


def _same(a: Any, b: Any) -> bool:
    """Equal values with equal types all the way down (so True never passes for 1, nor a tuple for a list)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_stored_vectors_match_the_code() -> None:
    """Regenerating gives the stored file byte for byte (SM2 signatures are kept while they verify)."""
    assert GEN.dump(GEN.build_vectors(VECTORS)) == GEN.dump(VECTORS), (
        "the encoding changed: if on purpose, run `PYTHONPATH=src python3 tests/vectors/make_vectors.py` "
        "and update docs/spec/encoding.md"
    )


def test_constants_match_the_code() -> None:
    c = VECTORS["constants"]
    assert c["MAX_DEPTH"] == codec.MAX_DEPTH == 32
    assert c["MAX_MESSAGE_BYTES"] == codec.MAX_MESSAGE_BYTES == 16 * 1024 * 1024
    assert int(c["MIN_INT"]) == codec.MIN_INT and int(c["MAX_INT"]) == codec.MAX_INT
    assert bytes.fromhex(c["DOMAIN_TX"]) == core.DOMAIN_TX
    assert bytes.fromhex(c["DOMAIN_VOTE"]) == core.DOMAIN_VOTE


@pytest.mark.parametrize("vector", VECTORS["values"], ids=lambda v: v["name"])
def test_value_vectors(vector: dict[str, Any]) -> None:
    value = GEN.from_tagged(vector["value"])
    data = bytes.fromhex(vector["hex"])
    assert codec.encode(value) == data
    assert _same(codec.decode(data), value)


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=lambda v: v["why"])
def test_rejected_vectors(vector: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        codec.decode(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", VECTORS["structures"], ids=lambda v: v["name"])
def test_structure_vectors(vector: dict[str, Any]) -> None:
    cls = STRUCTURES[vector["type"]]
    data = bytes.fromhex(vector["hex"])
    obj = cls.decode(data)
    assert obj.encode() == data
    assert _same(obj.to_wire(), GEN.from_tagged(vector["wire"]))
    assert cls.from_wire(GEN.from_tagged(vector["wire"])).encode() == data
    assert codec.encode(GEN.from_tagged(vector["wire"])) == data  # a structure is just its array of fields
    for name, fn in HASHES.items():
        assert fn(data).hex() == vector[name]


def test_structure_vectors_cover_every_structure() -> None:
    assert {v["type"] for v in VECTORS["structures"]} == set(STRUCTURES)


@pytest.mark.parametrize("suite_name", ["ed25519", "sm2"])
def test_transaction_identity_vectors(suite_name: str) -> None:
    v = VECTORS["identities"][suite_name]
    suite = get_suite(suite_name)
    private_key, public_key = bytes.fromhex(v["private_key"]), bytes.fromhex(v["public_key"])
    assert suite.get_public_key(private_key) == public_key
    assert len(public_key) == suite.public_key_size
    assert bytes.fromhex(v["address"]) == suite.hash(public_key)[:20] == suite.compute_address(public_key)
    body = core.TxBody.decode(bytes.fromhex(v["body_hex"]))
    assert body.sender == public_key
    tx_hash = bytes.fromhex(v["tx_hash"])
    assert core.compute_tx_hash(suite, body) == tx_hash == suite.hash(bytes.fromhex(v["body_hex"]))
    sign_bytes = bytes.fromhex(v["sign_bytes"])
    assert sign_bytes == core.DOMAIN_TX + tx_hash == core.compute_tx_sign_bytes(tx_hash)
    signature = bytes.fromhex(v["signature"])
    assert len(signature) == suite.signature_size
    assert suite.verify(public_key, sign_bytes, signature)
    if not v["signature_is_randomised"]:
        assert suite.sign(private_key, sign_bytes) == signature
    tx = core.Transaction.decode(bytes.fromhex(v["transaction_hex"]))
    assert tx.body == body and tx.signature == signature
    assert tx.encode().hex() == v["transaction_hex"]
    # The signed hash (the txs_root leaf) is the suite hash of the whole transaction's canonical bytes.
    assert core.compute_signed_tx_hash(suite, tx).hex() == v["signed_tx_hash"] == \
        suite.hash(bytes.fromhex(v["transaction_hex"])).hex()


def test_sm3_and_sha256_are_the_suite_hashes() -> None:
    assert get_suite("sm2").hash(b"abc") == HASHES["sm3"](b"abc")
    assert get_suite("ed25519").hash(b"abc") == HASHES["sha256"](b"abc")
    # GB/T 32905 appendix A.1
    assert HASHES["sm3"](b"abc").hex() == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


def test_block_identity_vectors() -> None:
    v = VECTORS["identities"]["block"]
    suite = get_suite(v["suite"])
    header = core.BlockHeader.decode(bytes.fromhex(v["header_hex"]))
    block_id = bytes.fromhex(v["block_id"])
    assert core.compute_block_id(suite, header) == block_id == hashlib.sha256(bytes.fromhex(v["header_hex"])).digest()
    tx_hashes = [bytes.fromhex(h) for h in v["tx_hashes"]]
    signed_hashes = [bytes.fromhex(h) for h in v["signed_tx_hashes"]]
    assert header.tx_count == len(tx_hashes) == len(signed_hashes)
    assert header.version == core.BLOCK_VERSION == 2
    # txs_root commits to the signed transactions; receipts name transactions by ID (body hash).
    assert header.txs_root.hex() == v["txs_root"] == merkle.compute_root(suite.hash, signed_hashes).hex()
    receipts = [bytes.fromhex(r) for r in v["receipts_hex"]]
    assert [core.Receipt.decode(r).tx_hash for r in receipts] == tx_hashes
    assert merkle.compute_root(suite.hash, receipts).hex() == v["receipts_root"]
    sign_bytes = bytes.fromhex(v["vote_sign_bytes"])
    assert sign_bytes == core.DOMAIN_VOTE + codec.encode([header.chain_id, core.PRECOMMIT, header.height, 0, block_id])
    commit = core.Commit.decode(bytes.fromhex(v["commit_hex"]))
    assert commit.block_id == block_id and commit.height == header.height
    assert core.compute_commit_hash(suite, commit).hex() == v["commit_hash"]
    assert core.compute_commit_hash(suite, None) == b""
    ed = VECTORS["identities"]["ed25519"]
    assert commit.signatures[0].validator.hex() == ed["address"] == header.proposer.hex()
    assert suite.verify(bytes.fromhex(ed["public_key"]), sign_bytes, commit.signatures[0].signature)


@pytest.mark.parametrize("vector", VECTORS["merkle"], ids=lambda v: f"{v['hash']}-{len(v['leaves'])}")
def test_merkle_vectors(vector: dict[str, Any]) -> None:
    fn = HASHES[vector["hash"]]
    leaves = [bytes.fromhex(x) for x in vector["leaves"]]
    root = bytes.fromhex(vector["root"])
    assert merkle.compute_root(fn, leaves) == root
    assert len(vector["proofs"]) == len(leaves)
    for i, p in enumerate(vector["proofs"]):
        proof = merkle.MerkleProof.from_wire([p["index"], p["size"], [bytes.fromhex(x) for x in p["path"]]])
        assert proof == merkle.compute_proof(fn, leaves, i)
        assert merkle.is_valid_proof(fn, root, leaves[i], proof)


def _spec_hex() -> str:
    """All of the spec's text with whitespace removed, so hex split over lines still matches."""
    return re.sub(r"\s+", "", SPEC.read_text(encoding="utf-8"))


def test_spec_worked_examples_match_the_vectors() -> None:
    """The hex pasted into docs/spec/encoding.md is the code's current output."""
    text = _spec_hex()
    ed = VECTORS["identities"]["ed25519"]
    block = VECTORS["identities"]["block"]
    three = {v["hash"]: v for v in VECTORS["merkle"] if len(v["leaves"]) == 3}
    expected = [
        ed["public_key"], ed["address"], ed["body_hex"], ed["tx_hash"], ed["sign_bytes"], ed["signature"],
        ed["transaction_hex"], ed["signed_tx_hash"], block["vote_sign_bytes"], block["block_id"],
        three["sha256"]["root"], three["sm3"]["root"], *three["sha256"]["proofs"][2]["path"],
        *three["sha256"]["proofs"][0]["path"],
        hashlib.sha256(b"").hexdigest(), hashlib.new("sm3", b"").hexdigest(),
    ]
    missing = [h for h in expected if h not in text]
    assert not missing, f"docs/spec/encoding.md lacks or misquotes: {missing}"
    assert "tests/vectors/encoding.json" in text
