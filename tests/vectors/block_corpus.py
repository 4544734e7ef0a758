"""A corpus of blocks whose execution outputs must be byte-identical on every supported CPython and hash seed.

The blocks deploy contracts and call functions that fail in ways whose *interpreter* text differs between CPython
versions (empty max, bad int text, key and index errors, Unicode tables, recursion, sorting mixed types …), deploy
sources whose *parsing* differs between versions (PEP 701 f-strings, ``\\N{}`` escapes, type parameters, deep
nesting), and use kv and the evidence contract. ``compute_corpus()`` executes them with the production
``execute_block`` and returns, per block, the receipts root, a digest of the state writes and each receipt's
status, fuel and error. ``blocks.json`` holds the expected values; tests compare every interpreter against it.

Regenerate (a consensus change, so only on purpose): ``python tests/vectors/make_block_vectors.py``."""

from __future__ import annotations

import hashlib
from typing import Any

from qilian.crypto import get_suite
from qilian.execution.block import execute_block
from qilian.execution.chain import ChainRules
from qilian.execution.contracts import compute_contract_address, compute_genesis_writes
from qilian.sdk.client import build_tx
from qilian.sdk.keys import KeyPair
from qilian.types.codec import encode_trusted
from qilian.types.core import ChainParams, Genesis, Member, Organisation, Validator, ValidatorSet, compute_tx_hash

SUITE = get_suite("ed25519")
CHAIN = "vectors-chain"


def _key(seed: int) -> KeyPair:
    sk = SUITE.private_key_from_seed(bytes([seed]) * 32)
    return KeyPair(SUITE, sk, SUITE.get_public_key(sk))


ADMIN, CLIENT, VAL = _key(11), _key(12), _key(13)
GENESIS = Genesis(CHAIN, "ed25519", 1_700_000_000_000, (Organisation("org1", (
    Member("admin", ADMIN.public_key, ("admin", "member")), Member("client", CLIENT.public_key, ("member",)),
    Member("v", VAL.public_key, ("validator",)))),), ValidatorSet((Validator(VAL.address, VAL.public_key, 1),)),
    ChainParams())

PROBE = '''
"""Functions whose failures read differently on different CPythons (the receipts must not)."""
h = Hash(default=0)


@export
def empty_max():
    return max([])


@export
def bad_int(text):
    return int(text)


@export
def missing_key():
    d = {"a": 1}
    return d["b"]


@export
def missing_index():
    return [1, 2][5]


@export
def divide(a, b):
    return a // b


@export
def negative_shift():
    return 1 << -1


@export
def mixed_sort():
    return sorted([1, "a", b"x"])


@export
def recurse(n):
    return recurse(n + 1)


@export
def unicode_tables(text):
    return [text.isalpha(), text.isdigit(), text.upper(), text.lower(), text.strip(), text.split()]


@export
def assert_text(msg):
    assert False, msg


@export
def concat():
    return "a" + 1


@export
def pop_empty():
    return [].pop()


@export
def list_index():
    return [1, 2].index(3)


@export
def bad_encoding(text):
    return text.encode("latin-1")


@export
def big_power():
    return 10 ** 5000


@export
def store(k, v):
    h[k] = v
    emit("Stored", {"k": k, "v": v})
    return h[k]


@export
def chr_of(n):
    return chr(n)
'''

GRAMMAR_PROBES = {
    "pep701_same_quote": 'x = Variable()\n@export\ndef f():\n    return f"{"a"}"\n',
    "pep701_backslash": 'x = Variable()\n@export\ndef f():\n    return f"{chr(10).join([])}" + f"{"\\n"}"\n',
    "named_escape": 'x = Variable()\n@export\ndef f():\n    return "\\N{BULLET}"\n',
    "type_params": '@export\ndef f[T](x):\n    return x\n',
    "deep_nesting": "@export\ndef f():\n    return " + "(" * 60 + "1" + ")" * 60 + "\n",
    "unary_chain": "@export\ndef f():\n    return " + "-" * 3000 + "1\n",
    "format_spec": "@export\ndef f(w):\n    return f'{1:>{w}}'\n",
    "other_quote_field": "@export\ndef f(d):\n    return f\"{d['k']}\"\n",
}


def _call(key: KeyPair, to: str, method: str, args: list[Any], nonce: int) -> Any:
    return build_tx(key, CHAIN, to, method, args, 1000, nonce=nonce)


def get_blocks() -> list[list[Any]]:
    """The corpus's transactions, block by block."""
    probe = compute_contract_address(SUITE, ADMIN.public_key, "probe")
    blocks: list[list[Any]] = [[_call(ADMIN, "contracts", "deploy", ["probe", PROBE], 1)]]
    blocks.append([_call(ADMIN, "contracts", "deploy", [name, src], 100 + i)
                   for i, (name, src) in enumerate(sorted(GRAMMAR_PROBES.items()))])
    calls: list[tuple[str, list[Any]]] = [
        ("empty_max", []), ("bad_int", ["x1"]), ("bad_int", ["١٢٣"]), ("missing_key", []), ("missing_index", []),
        ("divide", [1, 0]), ("negative_shift", []), ("mixed_sort", []), ("recurse", [0]),
        ("unicode_tables", ["\U00011f04"]), ("unicode_tables", ["ǅ ß İ\u3000"]), ("assert_text", ["plain"]),
        ("assert_text", ["\U0001f600 é"]), ("assert_text", [12]), ("concat", []), ("pop_empty", []),
        ("list_index", []), ("bad_encoding", ["€"]), ("big_power", []), ("store", ["k", [1, "二", b"3"]]),
        ("chr_of", [0xD800]), ("chr_of", [0x1F600]), ("no_such_function", []),
    ]
    blocks.append([_call(CLIENT, probe, m, a, 200 + i) for i, (m, a) in enumerate(calls)])
    digest = hashlib.sha256(b"a document").digest()
    blocks.append([
        _call(CLIENT, "kv", "put", ["k", "v"], 300),
        _call(CLIENT, "kv", "put", ["\U0001f600", b"\xff"], 301),
        _call(CLIENT, "kv", "nope\u0378", [], 302),
        _call(CLIENT, "evidence", "register", [digest, "title", "document", ""], 303),
        _call(CLIENT, "evidence", "register", [digest, "again", "document", ""], 304),
    ])
    return blocks


class _State:
    def __init__(self) -> None:
        self.values = {k: v for k, v in compute_genesis_writes(GENESIS).items() if v is not None}

    def get_state(self, namespace: str, key: bytes) -> bytes | None:
        return self.values.get((namespace, key))


def compute_corpus() -> list[dict[str, Any]]:
    """Execute the corpus with the production code; the outputs every interpreter must reproduce."""
    rules = ChainRules.from_genesis(GENESIS, SUITE)
    state = _State()
    out = []
    for height, txs in enumerate(get_blocks(), start=1):
        hashes = [compute_tx_hash(SUITE, tx.body) for tx in txs]
        res = execute_block(rules, state, txs, hashes, height, GENESIS.genesis_time_ms + 1000 * height)
        writes = sorted(res.writes.items())
        for (ns, key), value in writes:
            if value is None:
                state.values.pop((ns, key), None)
            else:
                state.values[(ns, key)] = value
        out.append({
            "height": height,
            "receipts_root": res.receipts_root.hex(),
            "writes": hashlib.sha256(encode_trusted([[ns, key, value] for (ns, key), value in writes])).hexdigest(),
            "receipts": [[r.status, r.fuel_used, r.error] for r in res.receipts],
        })
    return out
