"""The explorer's in-browser verifier follows validator-set changes exactly as the Python light client does: on a
signed chain whose set changes twice (a validator added, linked by the 1/3 skip rule; then the whole set replaced,
linked sequentially through the parent header), the bundle's ``verifyValidatorPath`` and
``qilian.sdk.verify.verify_validator_path`` accept and refuse the same paths — the honest one and each tampered
variant — and the page's incremental trust (``extendTrust``, ``verifyHeader``) asks for the path exactly where a
header names a set it does not trust yet. Runs the checked-in bundle under Node.js (no npm), both suites."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qilian.crypto import get_suite
from qilian.execution.evidence import compute_evidence_root
from qilian.sdk.keys import KeyPair
from qilian.sdk.proofs import get_commit_doc, get_header_doc, get_validator_path_doc
from qilian.sdk.verify import ProofInvalid, verify_validator_path
from qilian.types.core import (
    BLOCK_VERSION,
    PRECOMMIT,
    Block,
    BlockHeader,
    ChainParams,
    Commit,
    CommitSig,
    Genesis,
    Member,
    Organisation,
    Validator,
    ValidatorSet,
    compute_block_id,
    compute_vote_sign_bytes,
)
from qilian.types.genesis_json import genesis_to_json

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "src" / "qilian" / "api" / "static" / "explorer" / "verify.js"
SCRIPT = ROOT / "tests" / "js" / "check_validator_path.mjs"
CHAIN = "path-chain"
TIP = 10
ADDED_AT, REPLACED_AT = 5, 8
"""Heights from which the second and third sets sign."""


def _keys(suite_name: str) -> list[KeyPair]:
    suite = get_suite(suite_name)
    out = []
    for seed in range(60, 69):
        sk = suite.private_key_from_seed(bytes([seed]) * 32)
        out.append(KeyPair(suite, sk, suite.get_public_key(sk)))
    return out


def _set(keys: list[KeyPair]) -> ValidatorSet:
    return ValidatorSet(tuple(sorted((Validator(k.address, k.public_key, 1) for k in keys), key=lambda v: v.address)))


class SignedChain:
    """Headers 1..TIP, each committed by every key of the set that signs it: genesis's (keys 0-3) to height 4,
    plus key 4 from ADDED_AT, and keys 5-8 alone from REPLACED_AT (no overlap: only a sequential link reaches it)."""

    def __init__(self, suite_name: str) -> None:
        self.suite = get_suite(suite_name)
        keys = _keys(suite_name)
        self.sets = [_set(keys[:4]), _set(keys[:5]), _set(keys[5:9])]
        self.signers = [keys[:4], keys[:5], keys[5:9]]
        self.genesis = Genesis(CHAIN, suite_name, 0, (Organisation("org", tuple(
            Member(f"node{i}", k.public_key, ("validator",)) for i, k in enumerate(keys))),),
            self.sets[0], ChainParams())
        self.blocks: dict[int, Block] = {}
        self.commits: dict[int, Commit] = {}
        prev = b""
        for h in range(1, TIP + 2):
            header = BlockHeader(BLOCK_VERSION, CHAIN, h, 1000 * h, prev, b"" if h == 1 else bytes(32),
                                 bytes(32), 0, bytes(32), bytes(32), self.sets[self._era(h)].compute_hash(self.suite),
                                 self.sets[self._era(h + 1)].compute_hash(self.suite), keys[0].address,
                                 compute_evidence_root(self.suite, ()))
            block_id = compute_block_id(self.suite, header)
            msg = compute_vote_sign_bytes(CHAIN, PRECOMMIT, h, 0, block_id)
            signers = self.signers[self._era(h)]
            sigs = sorted((CommitSig(k.address, self.suite.sign(k.private_key, msg)) for k in signers),
                          key=lambda s: s.validator)
            self.blocks[h], self.commits[h] = Block(header, (), None), Commit(h, 0, block_id, tuple(sigs))
            prev = block_id

    @staticmethod
    def _era(h: int) -> int:
        return 0 if h < ADDED_AT else 1 if h < REPLACED_AT else 2

    def path(self, to: int) -> dict[str, Any]:
        """The path a node serves (the read side's rule: a parent only where the 1/3 skip rule cannot link)."""
        entries = []
        if to >= ADDED_AT:
            entries.append((self.blocks[ADDED_AT].header, self.commits[ADDED_AT], self.sets[1], None))
        if to >= REPLACED_AT:
            p = REPLACED_AT - 1
            entries.append((self.blocks[REPLACED_AT].header, self.commits[REPLACED_AT], self.sets[2],
                            (self.blocks[p].header, self.commits[p])))
        return get_validator_path_doc(self.suite, entries)

    def header_doc(self, h: int) -> dict[str, Any]:
        return {"header": get_header_doc(self.suite, self.blocks[h].header), "commit": get_commit_doc(self.commits[h])}


def _flip(hex_text: str, back: int = 5) -> str:
    b = bytearray(bytes.fromhex(hex_text))
    b[-back] ^= 0x01
    return b.hex()


def _variants(chain: SignedChain) -> dict[str, Any]:
    """The honest path and tampered ones: each must be judged the same by both verifiers."""
    good = chain.path(TIP)
    out: dict[str, Any] = {"honest": good, "empty": {**good, "entries": []}, "not a path": {**good, "type": "x"}}

    def edit(name: str, fn: Any) -> None:
        p = copy.deepcopy(good)
        fn(p["entries"])
        out[name] = p

    edit("flipped commit signature", lambda e: e[0]["commit"].update(encoded=_flip(e[0]["commit"]["encoded"])))
    edit("flipped parent signature", lambda e: e[1]["parent"]["commit"].update(
        encoded=_flip(e[1]["parent"]["commit"]["encoded"])))
    edit("sequential link dropped", lambda e: e[1].pop("parent"))
    edit("entries swapped", lambda e: e.reverse())
    edit("other set named", lambda e: e[0].update(validators=chain.sets[2].encode().hex()))
    edit("parent of another height", lambda e: e[1].update(parent=chain.header_doc(REPLACED_AT - 2)))
    edit("validators not hex", lambda e: e[0].update(validators="zz"))
    edit("header missing", lambda e: e[0].pop("header"))
    # the replaced set signing with only half its power (two signatures dropped from the commit)
    short = Commit(REPLACED_AT, 0, chain.commits[REPLACED_AT].block_id, chain.commits[REPLACED_AT].signatures[:2])
    edit("commit under 2/3", lambda e: e[1].update(commit=get_commit_doc(short)))
    return out


def _python_verdict(genesis: Genesis, path: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": [s[0] for s in verify_validator_path(genesis, path).spans]}
    except ProofInvalid as exc:
        return {"ok": False, "error": str(exc)}


def _entry(msg: str) -> str | None:
    m = re.search(r"validator path entry (\d+)", msg)
    return m.group(1) if m else None


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (the browser test covers this too)")
@pytest.mark.parametrize("suite_name", ["ed25519", "sm2"])
def test_browser_and_sdk_follow_validator_paths_alike(suite_name: str, tmp_path: Path) -> None:
    chain = SignedChain(suite_name)
    variants = _variants(chain)
    contradicting = copy.deepcopy(chain.path(TIP))
    contradicting["entries"][0] = contradicting["entries"][1]  # the change at ADDED_AT left out
    flows = {
        # genesis-only trust: header 4 is fine, header 9 asks for the path; after it, 9 and 1 verify
        "follow": [["header", 4], ["header", 9], ["extend", "to10", 10], ["header", 9], ["header", 1]],
        # a short path first, then a longer one: the second only adds the later change
        "incremental": [["extend", "to6", 6], ["header", 6], ["header", 9], ["extend", "to10", 10], ["header", 10]],
        # after following to 6, a path to 10 that omits the change at ADDED_AT is refused; trust is unchanged
        "contradiction": [["extend", "to6", 6], ["extend", "omits", 10], ["header", 6]],
        # a header beyond the followed path that names the last trusted set needs no new path (as the SDK)
        "same set beyond": [["extend", "to6", 6], ["header", 7]],
    }
    cases = {"genesis": json.loads(genesis_to_json(chain.genesis)),
             "cases": [{"name": n, "path": p} for n, p in variants.items()],
             "paths": {"to6": chain.path(6), "to10": chain.path(TIP), "omits": contradicting},
             "headers": {str(h): chain.header_doc(h) for h in range(1, TIP + 1)},
             "flows": [{"name": n, "steps": s} for n, s in flows.items()]}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run(["node", str(SCRIPT), str(BUNDLE), str(tmp_path / "cases.json")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    js = json.loads(run.stdout)

    for name, path in variants.items():
        py, got = _python_verdict(chain.genesis, path), js["paths"][name]
        assert got["ok"] == py["ok"], (name, py, got)
        if py["ok"]:
            assert got["value"] == py["value"], name
        elif _entry(py["error"]) is not None:  # the browser names the failing entry wherever the SDK does
            assert _entry(got["error"]) == _entry(py["error"]), (name, py["error"], got["error"])
    assert js["paths"]["honest"]["value"] == [1, ADDED_AT, REPLACED_AT]
    assert "does not verify" in js["paths"]["flipped commit signature"]["error"]
    assert "1/3" in js["paths"]["sequential link dropped"]["error"]

    follow = js["flows"]["follow"]
    assert follow[0] == {"ok": True, "value": 4}
    assert follow[1]["ok"] is False and follow[1]["need"] == 9
    assert follow[2]["value"] == [1, ADDED_AT, REPLACED_AT]
    assert follow[3] == {"ok": True, "value": 9} and follow[4] == {"ok": True, "value": 1}
    inc = js["flows"]["incremental"]
    assert inc[0]["value"] == [1, ADDED_AT] and inc[1]["ok"] and inc[2]["need"] == 9
    assert inc[3]["value"] == [1, ADDED_AT, REPLACED_AT] and inc[4]["ok"]
    con = js["flows"]["contradiction"]
    assert not con[1]["ok"] and "verified earlier" in con[1]["error"] and con[2]["ok"]
    assert js["flows"]["same set beyond"][1] == {"ok": True, "value": 7}
