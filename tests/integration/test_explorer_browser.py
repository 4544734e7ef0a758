"""The explorer in a real browser (Debian's chromium driven by Playwright) against a real node, for both crypto
suites: every page loads without a console error, search and live updates work, "Verify" is green on honest data
and red through a tampering proxy, and the evidence page's certificate checks offline.

Screenshots go to a temporary directory, or to ``$QILIAN_EXPLORER_SCREENSHOTS`` when set (docs/explorer/ holds a
committed set, refreshed with ``QILIAN_EXPLORER_SCREENSHOTS=docs/explorer``).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from qilian.sdk.certificate import check_certificate
from qilian.sdk.client import Client

from .conftest import Chain, free_port, make_chain

CHROMIUM = next((p for p in (os.environ.get("QILIAN_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
try:
    from playwright.sync_api import ConsoleMessage, Page, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium; .ci/run does)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
]

COUNTER = '''
total = Variable(default=0)


@export
def add(n: int):
    total.set(total.get() + n)
    emit("Added", {"n": n, "total": total.get()})
    return total.get()


@export
def get():
    return total.get()
'''


def _flip_hex(s: str) -> str:
    """Change the last hex digit: a one-byte tamper that keeps the document well formed."""
    return s[:-1] + ("0" if s[-1] != "0" else "1")


def _tamper(path: str, doc: Any) -> Any:
    if path.startswith("/blocks/") and isinstance(doc, dict) and doc.get("commit"):
        doc["commit"]["encoded"] = _flip_hex(doc["commit"]["encoded"])  # a byte of the last signature
    elif path.startswith("/txs/") and isinstance(doc, dict) and "proof" in doc:
        mp = doc["proof"]["tx"]["merkle"]
        if mp["path"]:
            mp["path"][0] = _flip_hex(mp["path"][0])
        else:
            doc["tx"]["encoded"] = _flip_hex(doc["tx"]["encoded"])  # a byte of the sender's signature
            doc["receipt"]["encoded"] = _flip_hex(doc["receipt"]["encoded"])
    elif path.startswith("/state/") and isinstance(doc, dict) and doc.get("value"):
        doc["value"] = _flip_hex(doc["value"])
    return doc


class TamperingProxy:
    """An HTTP proxy in front of a node that flips one byte in every proof-carrying answer (``tamper``: how a JSON
    answer of a path is changed; the default covers blocks, transactions and state)."""

    def __init__(self, upstream: str, tamper: Callable[[str, Any], Any] | None = None):
        self.upstream = upstream
        self.tamper = tamper or _tamper
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.AsyncClient(base_url=upstream, timeout=30)
        app = Starlette(routes=[Route("/{path:path}", self.forward, methods=["GET", "POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def forward(self, request: Request) -> Response:
        path = request.url.path
        r = await self.client.request(request.method, path, params=request.query_params,
                                      content=await request.body(),
                                      headers={"content-type": request.headers.get("content-type", "")})
        body = r.content
        if r.headers.get("content-type", "").startswith("application/json") and r.status_code == 200:
            body = json.dumps(self.tamper(path, json.loads(body))).encode()
        ctype = r.headers.get("content-type", "application/octet-stream")
        return Response(body, status_code=r.status_code, media_type=ctype.split(";")[0])

    def __enter__(self) -> TamperingProxy:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(params=["ed25519", "sm2"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Chain, dict[str, Any]]]:
    chain = make_chain(tmp_path, suite=request.param, interval_ms=150)
    chain.node.start()
    try:
        c = Client(chain.node.url)
        facts: dict[str, Any] = {"suite": request.param}
        facts["put"] = c.call(chain.client_key, "kv", "put", ["greeting", "你好, Qilian"])
        dep = c.call(chain.admin_key, "contracts", "deploy", ["counter", COUNTER])
        facts["contract"] = dep["receipt"]["result"]
        facts["add"] = c.call(chain.client_key, facts["contract"], "add", [5])
        doc = f"contract of {request.param} chain".encode()
        from qilian.crypto import get_suite

        facts["doc"] = doc
        facts["evidence"] = c.call(chain.client_key, "evidence", "register",
                                   [get_suite(request.param).hash(doc), "Supply contract", "text", "file://contract.txt"])
        assert facts["evidence"]["receipt"]["status"] == "ok", facts["evidence"]
        facts["tip"] = c.call(chain.client_key, "kv", "put", ["after", "x"])["height"]  # receipts now provable
        yield chain, facts
    finally:
        chain.node.stop()


def _shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("QILIAN_EXPLORER_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _wait_view(page: Page, fragment: str, ready: str) -> None:
    """Waits until the page for ``fragment`` is on screen and ``ready`` is in it. Going from one fragment to another
    keeps the previous page's content until the new one replaces it, so ``ready`` alone could match the old page
    (its Verify button, already green or red)."""
    page.wait_for_selector(f'main[data-view="{fragment}"]:not([aria-busy])', state="attached", timeout=20_000)
    page.wait_for_selector(ready, timeout=20_000)


def _verdict(page: Page) -> str:
    page.get_by_test_id("verify").first.click()
    el = page.get_by_test_id("verdict").first.element_handle()
    page.wait_for_function("el => el.dataset.verdict === 'ok' || el.dataset.verdict === 'bad'",
                           arg=el, timeout=30_000)
    return str(el.get_attribute("data-verdict"))


def test_explorer_in_chromium(world: tuple[Chain, dict[str, Any]], tmp_path: Path) -> None:
    chain, f = world
    suite = f["suite"]
    shots = _shots_dir(tmp_path)
    url = chain.node.url
    put_hash, add_hash = f["put"]["hash"], f["add"]["hash"]
    me = chain.client_key.address.hex()
    assert sync_playwright is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            errors: list[str] = []

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    errors.append(f"{page.url}: {msg.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

            def visit(fragment: str, ready: str, shot: str | None) -> None:
                page.goto(f"{url}/explorer/{fragment}")
                _wait_view(page, fragment, ready)
                assert not page.query_selector("[data-testid=page-error]"), page.inner_text("main")
                if shot:
                    page.screenshot(path=str(shots / f"{suite}-{shot}.png"), full_page=True)

            # Every page, honest data: loads, and every Verify is green.
            visit("#/", "#dash-height", None)
            page.wait_for_timeout(300)
            page.screenshot(path=str(shots / f"{suite}-dashboard.png"), full_page=True)
            visit("#/blocks", "main table a", "blocks")
            visit(f"#/block/{f['add']['height']}", "[data-testid=verify]", None)
            assert _verdict(page) == "ok", page.inner_text("main")
            page.screenshot(path=str(shots / f"{suite}-block.png"), full_page=True)
            visit(f"#/tx/{add_hash}", "[data-testid=verify]", None)
            assert _verdict(page) == "ok", page.inner_text("main")
            assert "Added" in page.inner_text("main")
            page.screenshot(path=str(shots / f"{suite}-transaction.png"), full_page=True)
            visit("#/state/kv/greeting", "[data-testid=verify]", None)
            assert _verdict(page) == "ok", page.inner_text("main")
            assert "你好, Qilian" in page.inner_text("main")
            page.screenshot(path=str(shots / f"{suite}-state.png"), full_page=True)
            visit(f"#/account/{me}", "main table a", "account")
            assert put_hash[:12] in page.inner_text("main")
            visit("#/contracts", "main table a", "contracts")
            visit(f"#/contract/{f['contract']}", "[data-testid=source]", None)
            page.select_option("select[name=method]", "get")
            page.click("text=Query (read-only)")
            page.wait_for_selector("[data-testid=query-result] pre")
            assert '"result": 5' in page.inner_text("[data-testid=query-result]")
            page.screenshot(path=str(shots / f"{suite}-contract.png"), full_page=True)

            # Evidence: the file is hashed in the page (SM3 or SHA-256), found, verified, and its certificate
            # checks offline with the SDK.
            visit("#/evidence", "[data-testid=evidence-file]", None)
            doc_path = tmp_path / "contract.txt"
            doc_path.write_bytes(f["doc"])
            page.set_input_files("[data-testid=evidence-file]", str(doc_path))
            page.wait_for_selector("[data-testid=evidence-status]")
            assert page.inner_text("[data-testid=evidence-status]") == "Registered."
            assert _verdict(page) == "ok", page.inner_text("main")
            with page.expect_download() as dl:
                page.click("[data-testid=download-cert]")
            cert = json.loads(Path(dl.value.path()).read_text())
            checked = check_certificate(cert, pinned_genesis=chain.genesis, file_bytes=f["doc"])
            assert checked.height == f["evidence"]["height"]
            page.screenshot(path=str(shots / f"{suite}-evidence.png"), full_page=True)

            # Search: a contract name, a height, a transaction hash.
            for q, expect in (("counter", f"#/contract/{f['contract']}"), (str(f["tip"]), f"#/block/{f['tip']}"),
                              (put_hash, f"#/tx/{put_hash}")):
                page.fill("#search-input", q)
                page.press("#search-input", "Enter")
                page.wait_for_url(f"**/explorer/{expect}", timeout=15_000)
            page.fill("#search-input", "no-such-thing-anywhere")
            page.press("#search-input", "Enter")
            page.wait_for_selector("[data-testid=search-none]")

            # A live update arrives over the WebSocket.
            visit("#/", "#dash-height", None)
            page.wait_for_function("document.getElementById('live-height').textContent !== '–'")
            before = int(page.inner_text("[data-testid=live-height]"))
            height = Client(url).call(chain.client_key, "kv", "put", ["live", "yes"])["height"]
            assert height > before
            page.wait_for_function(f"Number(document.getElementById('live-height').textContent) >= {height}",
                                   timeout=20_000)
            page.wait_for_selector("#feed >> text=kv.put")
            assert not errors, errors

            # Through a proxy that flips one byte of each proof-carrying answer, every verdict is red.
            with TamperingProxy(url) as proxy:
                bad = browser.new_page()
                for fragment in (f"#/block/{f['add']['height']}", f"#/tx/{add_hash}", f"#/tx/{put_hash}",
                                 "#/state/kv/greeting"):
                    bad.goto(f"{proxy.url}/explorer/{fragment}")
                    _wait_view(bad, fragment, "[data-testid=verify]")  # not the previous fragment's page
                    assert _verdict(bad) == "bad", (fragment, bad.inner_text("main"))
                bad.screenshot(path=str(shots / f"{suite}-tampered.png"), full_page=True)
                bad.close()
        finally:
            browser.close()
