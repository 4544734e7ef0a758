"""Never a 500 for client input: random and mutated bodies, paths and queries against the real ASGI app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qilian.api.app import create_app
from qilian.node.config import init_home, load_config
from qilian.node.node import Node
from qilian.sdk.client import build_tx
from qilian.sdk.keys import load_key


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, bytes, Node]]:
    home: Path = tmp_path_factory.mktemp("fuzz") / "home"
    init_home(home, chain_id="fuzz-chain", suite_name="ed25519")
    node = Node(load_config(home))
    key = load_key(home / "keys" / "org1-client.pem")
    good = build_tx(key, "fuzz-chain", "kv", "put", ["k", "v"], 100).encode()
    with TestClient(create_app(node), raise_server_exceptions=False) as client:
        yield client, good, node
    node.close()


def _mutate(data: bytes, pos: int, byte: int, cut: int) -> bytes:
    b = bytearray(data)
    b[pos % len(b)] = byte
    return bytes(b[: max(1, len(b) - cut)])


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(st.binary(max_size=600))
def test_random_tx_bodies_get_4xx(api: tuple[TestClient, bytes, Node], body: bytes) -> None:
    client, _, node = api
    r = client.post("/txs", content=body, headers={"content-type": "application/octet-stream"})
    assert r.status_code in (400, 403, 413, 422), (r.status_code, r.text)
    assert "error" in r.json() and r.json()["message"]
    assert len(node.mempool) == 0


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 40))
def test_mutated_transactions_never_500(api: tuple[TestClient, bytes, Node], pos: int, byte: int, cut: int) -> None:
    client, good, node = api
    body = _mutate(good, pos, byte, cut)
    r = client.post("/txs", content=body, headers={"content-type": "application/octet-stream"})
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]
    node.mempool.process_remove([e.tx_hash for e in node.mempool.get_entries()])


@SETTINGS
@given(st.text(max_size=80), st.text(max_size=80), st.sampled_from(["/txs/", "/blocks/", "/state/kv/", "/state/"]))
def test_random_paths_and_queries_never_500(api: tuple[TestClient, bytes, Node], a: str, b: str,
                                             prefix: str) -> None:
    client, _, _ = api
    r = client.get(prefix + quote(a, safe=""), params={"encoding": b})
    assert r.status_code < 500, (r.status_code, r.text)
    r = client.post("/txs", params={"wait": b, "timeout": a}, json={"tx": a})
    assert r.status_code < 500, (r.status_code, r.text)
