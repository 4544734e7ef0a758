"""The checked-in browser verifier is built from the sources beside it: a source edited without `npm run build`
(web/explorer) fails here, not in a user's browser."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web" / "explorer"
BUNDLE = ROOT / "src" / "qilian" / "api" / "static" / "explorer" / "verify.js"


def compute_sources_hash() -> str:
    """The hash build.mjs writes into the bundle's banner (lock file, then src/*.js by name)."""
    h = hashlib.sha256()
    for name in ["package-lock.json", *sorted(f"src/{p.name}" for p in (WEB / "src").glob("*.js"))]:
        h.update(name.encode() + b"\0")
        h.update((WEB / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def test_bundle_is_built_from_the_current_sources() -> None:
    head = BUNDLE.read_text(encoding="utf-8")[:400]
    m = re.search(r"sources-sha256: ([0-9a-f]{64})", head)
    assert m, "the bundle has no sources hash: rebuild it (cd web/explorer && npm ci && npm run build)"
    assert m.group(1) == compute_sources_hash(), \
        "web/explorer/src changed since the bundle was built: cd web/explorer && npm ci && npm run build"
