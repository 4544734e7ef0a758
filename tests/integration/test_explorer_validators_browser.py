"""The explorer's verifier follows a governance validator-set change, in a real browser (Debian's chromium driven by
Playwright) on a real network: four genesis validators and a fifth node that follows as an observer until the
organisations vote it in (``validator.update``). Blocks, transactions and state after the change verify green —
the page fetches the validator path once and follows the set from genesis — and so do blocks from before it; the
evidence certificate downloaded after the change carries the path and checks offline with the SDK. Through a
proxy that corrupts the validator path (one signature byte flipped, or the change left out) every post-change
verdict is red while the blocks signed by the genesis set stay green."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from qilian.crypto import get_suite
from qilian.node.config import load_genesis
from qilian.sdk.certificate import check_certificate
from qilian.sdk.client import Client
from qilian.sdk.keys import KeyPair, load_key
from qilian.types.core import ValidatorSet
from qilian.types.genesis_json import genesis_to_json

from .netutil import make_net
from .test_explorer_browser import CHROMIUM, Page, TamperingProxy, _flip_hex, _verdict, _wait_view, sync_playwright
from .test_explorer_browser import pytestmark as browser_marks

pytestmark = [*browser_marks, pytest.mark.timeout(420)]

SUITE = "sm2"


def _flip_path_signature(path: str, doc: Any) -> Any:
    """The validator path with one byte of the first change's commit flipped (a signature byte)."""
    if path == "/gov/validators/path" and isinstance(doc, dict) and doc.get("entries"):
        doc = copy.deepcopy(doc)
        commit = doc["entries"][0]["commit"]
        commit["encoded"] = _flip_hex(commit["encoded"])
    return doc


def _drop_change(path: str, doc: Any) -> Any:
    """The validator path with the change left out (as a node hiding a set change would serve it)."""
    if path == "/gov/validators/path" and isinstance(doc, dict):
        doc = dict(doc, entries=[])
    return doc


def _ok(resp: dict[str, Any]) -> dict[str, Any]:
    assert resp["receipt"]["status"] == "ok", resp["receipt"]
    return resp


def test_explorer_follows_a_validator_change_in_chromium(tmp_path: Path) -> None:
    net = make_net(tmp_path, n=5, suite=SUITE, interval_ms=150)
    # node4 is a member of org1 with the validator role but not in the genesis set: an observer until voted in
    genesis = load_genesis(net.root / "genesis.json")
    node4: KeyPair = load_key(net.nodes[4].home / "keys" / "node4.pem", None)
    genesis = dataclasses.replace(genesis, validators=ValidatorSet(tuple(
        v for v in genesis.validators.validators if v.public_key != node4.public_key)))
    assert len(genesis.validators.validators) == 4
    text = genesis_to_json(genesis)
    for p in [net.root / "genesis.json", *(n.home / "genesis.json" for n in net.nodes)]:
        p.write_text(text)
    admin1, admin2 = (load_key(net.root / "keys" / f"org{i}-admin.pem") for i in (1, 2))
    url = net.nodes[0].url
    try:
        for n in net.nodes[:4]:
            n.start()
        c = Client(url)
        before = _ok(c.call(net.client_key, "kv", "put", ["before", "genesis set"]))
        net.nodes[4].start()
        net.wait_height([net.nodes[4]], net.height(net.nodes[0]), 60)

        pid = _ok(c.call(admin1, "gov", "propose", [["validator.update", [[node4.public_key, 1]]]]))
        voted = _ok(c.call(admin2, "gov", "vote", [pid["receipt"]["result"]["id"], "yes"]))
        decided = int(httpx.get(f"{url}/gov/proposals/{pid['receipt']['result']['id']}").json()
                      ["proposal"]["decided"])
        assert decided == voted["height"]
        changed = decided + 2  # the first height the new set signs
        filler = 0
        while net.height(net.nodes[0]) < changed:  # blocks are made only for transactions (no empty blocks)
            filler += 1
            _ok(c.call(net.client_key, "kv", "put", [f"filler{filler}", "x"]))
            assert filler < 10
        suite = get_suite(SUITE)
        old_hash = genesis.validators.compute_hash(suite).hex()
        assert httpx.get(f"{url}/blocks/{changed - 1}").json()["header"]["validators_hash"] == old_hash
        assert httpx.get(f"{url}/blocks/{changed}").json()["header"]["validators_hash"] != old_hash

        after = _ok(c.call(net.client_key, "kv", "put", ["after", "five validators"]))
        doc = f"registered after the change on the {SUITE} chain".encode()
        evidence = _ok(c.call(net.client_key, "evidence", "register",
                              [suite.hash(doc), "After the change", "text", "file://after.txt"]))
        tip = _ok(c.call(net.client_key, "kv", "put", ["tip", "x"]))["height"]  # receipts now provable
        assert after["height"] > changed and tip > evidence["height"]
        path_doc = httpx.get(f"{url}/gov/validators/path", params={"to": tip}).json()
        assert [e["height"] for e in path_doc["entries"]] == [changed]

        assert sync_playwright is not None
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

                def check(p: Page, base: str, fragment: str) -> tuple[str, str]:
                    p.goto(f"{base}/explorer/{fragment}")
                    _wait_view(p, fragment, "[data-testid=verify]")
                    return _verdict(p), p.inner_text("[data-testid=verdict]")

                # Honest node: after the change green, naming the followed change; before it green too.
                for fragment in (f"#/block/{changed}", f"#/block/{tip}", f"#/tx/{after['hash']}",
                                 "#/state/kv/after"):
                    verdict, shown = check(page, url, fragment)
                    assert verdict == "ok", (fragment, shown)
                    assert "1 verified change" in shown, (fragment, shown)
                for fragment in (f"#/block/{before['height']}", f"#/tx/{before['hash']}"):
                    verdict, shown = check(page, url, fragment)
                    assert verdict == "ok" and "genesis validator set" in shown, (fragment, shown)

                # The evidence certificate made after the change carries the path and checks offline.
                page.goto(f"{url}/explorer/#/evidence")
                page.wait_for_selector("[data-testid=evidence-file]", timeout=20_000)
                (tmp_path / "after.txt").write_bytes(doc)
                page.set_input_files("[data-testid=evidence-file]", str(tmp_path / "after.txt"))
                page.wait_for_selector("[data-testid=evidence-status]")
                assert _verdict(page) == "ok", page.inner_text("main")
                with page.expect_download() as dl:
                    page.click("[data-testid=download-cert]")
                cert = json.loads(Path(dl.value.path()).read_text())
                assert cert["version"] == 3 and cert["validator_path"]["entries"]
                assert check_certificate(cert, pinned_genesis=genesis, file_bytes=doc).height == evidence["height"]
                assert not errors, errors

                # A corrupted validator path: post-change verdicts red, naming the path; genesis-set blocks green.
                for tamper, expect in ((_flip_path_signature, "validator path entry 0"),
                                       (_drop_change, "validator set other than")):
                    with TamperingProxy(url, tamper) as proxy:
                        bad = browser.new_page()
                        for fragment in (f"#/block/{changed}", f"#/tx/{after['hash']}", "#/state/kv/after"):
                            verdict, shown = check(bad, proxy.url, fragment)
                            assert verdict == "bad" and expect in shown, (tamper.__name__, fragment, shown)
                        verdict, shown = check(bad, proxy.url, f"#/block/{before['height']}")
                        assert verdict == "ok", (tamper.__name__, shown)
                        bad.close()
            finally:
                browser.close()
    finally:
        for n in net.nodes:
            n.stop()
