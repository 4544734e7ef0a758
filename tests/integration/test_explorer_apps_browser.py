"""The explorer's scenario-app pages in a real browser (Debian's chromium driven by Playwright) against a real
four-organisation node whose data was written through the API: a trace item's history (reached through the very
URL its QR code holds), a DID, an asset and a registry record each load without a console error and their Verify
is green on honest data and red through a proxy that flips one byte of every proof; search and the dashboard
lead to them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qilian.apps.identity.sdk import compute_create_args
from qilian.apps.trace.sdk import compute_explorer_url, make_event
from qilian.sdk.client import Client
from qilian.sdk.keys import generate_key, load_key

from .apputil import OrgChain
from .test_explorer_browser import TamperingProxy, _verdict, _wait_view

CHROMIUM = next((p for p in (os.environ.get("QILIAN_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
try:
    from playwright.sync_api import ConsoleMessage, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (apt-get install chromium; .ci/run does)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.timeout(300),
]

ORGS = ("farm", "processor", "distributor", "retailer")
LOT = "urn:epc:class:lgtin:0614141.107346.2025A"
EGG = "urn:epc:id:sgtin:0614141.107346.1"
T = "2025-05-01T08:00:00Z"


def _ok(res: dict[str, Any]) -> dict[str, Any]:
    assert res["status"] == "committed" and res["receipt"]["status"] == "ok", res
    return res


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[OrgChain, dict[str, Any]]]:
    chain = OrgChain(tmp_path, ORGS)
    chain.node.start()
    try:
        c = Client(chain.node.url)
        k = {name: load_key(Path(chain.key(name))) for o in ORGS for name in (f"{o}-admin", f"{o}-client")}
        farm, proc = k["farm-client"], k["processor-client"]
        _ok(c.call(farm, "trace", "commission", [make_event("commission", T, [EGG], ilmd={"lotNumber": LOT})]))
        ship = make_event("ship", T, [EGG], destinationList=[{"type": "owning_party", "destination": "processor"}])
        _ok(c.call(farm, "trace", "ship", [ship]))
        _ok(c.call(proc, "trace", "receive", [make_event("receive", T, [EGG])]))
        _ok(c.call(k["farm-admin"], "trace", "recall", [LOT, "salmonella in flock 7"]))

        did_key = generate_key("ed25519")
        did, args = compute_create_args(did_key, chain.genesis.chain_id, [])
        _ok(c.call(farm, "did", "create", args))

        _ok(c.call(k["farm-admin"], "asset", "create", ["CNY", "Renminbi", 2]))
        _ok(c.call(k["farm-admin"], "asset", "mint", ["CNY", farm.address.hex(), 100_000]))
        _ok(c.call(farm, "asset", "transfer", ["CNY", proc.address.hex(), 2_500, "invoice 42"]))

        _ok(c.call(k["farm-admin"], "registry", "create", ["parcels", "2", ["farm", "processor", "distributor"]]))
        _ok(c.call(k["retailer-client"], "registry", "submit",
                   ["parcels", "QD-001", {"holder": "Wang Fang", "attributes": {"area_m2": 120}, "documents": []}]))
        _ok(c.call(k["farm-client"], "registry", "approve", [1, "survey ok"]))
        last = _ok(c.call(k["processor-client"], "registry", "approve", [1, ""]))
        # a later block (blocks are made on demand), so the last receipts and state are proven by a header
        assert _ok(c.call(farm, "kv", "put", ["after", "x"]))["height"] > last["height"]
        yield chain, {"did": did, "farm": farm.address.hex(), "proc": proc.address.hex()}
    finally:
        chain.node.stop()


def test_app_pages_in_chromium(world: tuple[OrgChain, dict[str, Any]], tmp_path: Path) -> None:
    chain, f = world
    url = chain.node.url
    shots = Path(os.environ.get("QILIAN_EXPLORER_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    assert sync_playwright is not None
    pages = {
        "trace": (compute_explorer_url(url, EGG), ["custodian", "processor", "RECALLED (recall 1)"],
                  ["farm", "processor", "RECALLED"]),
        "did": (f"{url}/explorer/#/did/{f['did']}", [f"{f['did']}#key-1"], ["key key-1 (Ed25519)"]),
        "asset": (f"{url}/explorer/#/asset/CNY", ["Renminbi", "100000"], ["supply 100000", "2500 (proven)"]),
        "registry": (f"{url}/explorer/#/registry/parcels/QD-001", ["Wang Fang", "approved by farm (survey ok)"],
                     ["approve by farm", "approve by processor"]),
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []

            def on_console(msg: ConsoleMessage) -> None:
                if msg.type == "error":
                    errors.append(f"{page.url}: {msg.text}")

            page.on("console", on_console)
            page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))

            for name, (address, shown, proven) in pages.items():
                page.goto(address)
                _wait_view(page, "#" + address.split("#", 1)[1], "[data-testid=verify]")
                assert not page.query_selector("[data-testid=page-error]"), page.inner_text("main")
                text = " ".join(page.inner_text("main").split())
                for s in shown:
                    assert s in text, (name, s, text)
                assert _verdict(page) == "ok", (name, page.inner_text("main"))
                verdict = " ".join(page.inner_text("[data-testid=verdict]").split())
                for s in proven:
                    assert s in verdict, (name, s, verdict)
                page.screenshot(path=str(shots / f"app-{name}.png"), full_page=True)

            # Search recognises app identifiers and lands on their pages.
            for q, expect in ((f["did"], f"#/did/{f['did']}"), ("CNY", "#/asset/CNY"),
                              ("parcels/QD-001", "#/registry/parcels/QD-001")):
                page.fill("#search-input", q)
                page.press("#search-input", "Enter")
                page.wait_for_url(f"**/explorer/{expect}", timeout=15_000)
            page.fill("#search-input", EGG)
            page.press("#search-input", "Enter")
            page.wait_for_selector("h1 >> text=Item")
            assert EGG in page.inner_text("h1")

            # The dashboard links to the app objects the index has seen.
            page.goto(f"{url}/explorer/#/")
            page.wait_for_selector("[data-testid=apps] a", timeout=20_000)
            page.click(f"[data-testid=apps] a:has-text('{EGG}')")
            page.wait_for_selector("[data-testid=verify]")
            assert EGG in page.inner_text("h1")
            assert not errors, errors

            # Through a proxy that flips one byte of each state value and transaction proof, every verdict is red.
            with TamperingProxy(url) as proxy:
                bad = browser.new_page()
                for name, (address, _, _) in pages.items():
                    bad.goto(address.replace(url, proxy.url))
                    _wait_view(bad, "#" + address.split("#", 1)[1], "[data-testid=verify]")
                    assert _verdict(bad) == "bad", (name, bad.inner_text("main"))
                bad.close()
        finally:
            browser.close()
