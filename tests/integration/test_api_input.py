"""Input the API used to reinterpret or answer with a 500: every case gets the JSON error shape and the right
status, and state keys are the exact bytes the client sent."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from qilian.sdk.client import Client, build_tx

from .conftest import Chain


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_hostile_requests_get_named_errors(chain: Chain) -> None:
    c = Client(chain.node.url)
    res = c.call(chain.client_key, "kv", "put", [b"\xff\xfe", b"raw"])
    assert res["status"] == "committed"
    c.call(chain.client_key, "kv", "put", ["after", "x"])  # the header after the first write proves it
    http = httpx.Client(base_url=chain.node.url, timeout=10)

    # Percent-encoded bytes are the key itself, never U+FFFD text standing for another key.
    got = http.get("/state/kv/%ff%fe").json()
    assert got["key"] == "fffe" and got["value"] == b"raw".hex()
    other = http.get("/state/kv/%ef%bf%bd").json()
    assert other["key"] == "efbfbd" and other["value"] is None
    assert http.get("/state/kv/a%2Fb").json()["key"] == b"a/b".hex()

    # A query's sender is an address or nothing, not silently ignored.
    r = http.post("/contracts/evidence/query", json={"method": "get", "args": [{"hex": "00" * 32}],
                                                     "sender": "zz"})
    assert r.status_code == 400 and r.json()["error"] == "bad_address"

    # Deep JSON is a 400 with the error shape, not a 500.
    for path, body in (("/txs", '{"tx": ' + _nested(5000) + "}"),
                       ("/contracts/evidence/query", '{"method": "get", "args": ' + _nested(5000) + "}")):
        r = http.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert set(r.json()) == {"error", "message"}

    # Over max_tx_bytes is 413 (Payload Too Large), as docs/api.md says.
    tx = build_tx(chain.client_key, chain.genesis.chain_id, "kv", "put", ["big", "x" * (70 * 1024)], 10**6)
    r = http.post("/txs", content=tx.encode(), headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["error"] == "too_large", r.text[:200]


def test_closed_event_subscribers_free_their_slots_on_an_idle_chain(chain: Chain) -> None:
    """More connect/close cycles than there are slots, with no block in between: the next subscriber is served."""
    url = chain.node.url.replace("http://", "ws://") + "/events"

    async def cycle() -> None:
        for _ in range(300):
            async with websockets.connect(url) as ws:
                await ws.close()
        async with websockets.connect(url) as ws:
            Client(chain.node.url).call(chain.client_key, "kv", "put", ["ws", "ok"], wait="none")
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert msg.get("type") != "error", msg
                if msg.get("type") in ("block", "event"):
                    return

    asyncio.run(cycle())


def test_openapi_documents_raw_bodies_and_the_error_shape(chain: Chain) -> None:
    doc = httpx.get(chain.node.url + "/openapi.json", timeout=10).json()
    assert set(doc["paths"]["/txs"]["post"]["requestBody"]["content"]) == {"application/octet-stream",
                                                                          "application/json"}
    assert "application/octet-stream" in doc["paths"]["/txs/batch"]["post"]["requestBody"]["content"]
    q = doc["paths"]["/contracts/{address}/query"]["post"]["requestBody"]["content"]["application/json"]
    assert q["schema"]["required"] == ["method"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["error", "message"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}, (path, method)
    # The documented shape is the real one: a 404 and a 422 both answer it.
    for url in ("/txs/" + "00" * 32, "/blocks/latest?x=1", "/txs/zz", "/txs?wait=never"):
        r = httpx.get(chain.node.url + url, timeout=10) if "wait" not in url else \
            httpx.post(chain.node.url + url, content=b"", timeout=10)
        if r.status_code >= 400:
            assert set(r.json()) == {"error", "message"}, (url, r.text)


def _raw_request(url: str, request: bytes) -> bytes:
    import socket
    from urllib.parse import urlparse

    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def test_unparseable_requests_get_the_json_error_shape(chain: Chain) -> None:
    """Raw non-ASCII bytes in the request line, or a request line over the parser's limit: still a JSON 400."""
    for req in (b"GET /state/kv/\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        head, _, body = _raw_request(chain.node.url, req).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head, head
        doc = json.loads(body)
        assert doc["error"] == "bad_request" and "percent-encode" in doc["message"]
    assert httpx.get(chain.node.url + "/status", timeout=10).status_code == 200  # the node is unharmed


def test_a_client_that_leaves_mid_body_is_no_server_error(chain: Chain) -> None:
    """A client that closes its connection before the whole body arrived (its own timeout under load) is the
    client's doing: the node answers it as a 400 (never a 500), logs no "Exception in ASGI application"
    traceback for it, and serves on."""
    import re
    import socket
    import time
    from urllib.parse import urlparse

    u = urlparse(chain.node.url)
    routes = ("/txs/batch", "/txs")
    for path in routes:
        with socket.create_connection((u.hostname, u.port), timeout=10) as s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Length: 100000\r\n\r\n".encode() + b"\x00" * 1000)
    # Wait (bounded) until the node has finished both requests: its latency histogram counts each by status.
    finished: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while len(finished) < len(routes) and time.monotonic() < deadline:
        metrics = httpx.get(chain.node.url + "/metrics", timeout=10).text
        for route, status in re.findall(r'qilian_api_request_seconds_count\{[^}]*route="([^"]+)"[^}]*'
                                        r'status="(\d+)"[^}]*\} [1-9]', metrics):
            if route in routes:
                finished[route] = status
    assert finished == {r: "400" for r in routes}, finished
    log = chain.node.log_path.read_text(errors="replace")
    assert "ClientDisconnect" not in log and "Exception in ASGI application" not in log, log[-3000:]
