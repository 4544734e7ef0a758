"""The explorer's in-browser verifier (the checked-in bundle) agrees with the reference code on every encoding,
Merkle, hash and signature vector — run under Node.js when it is installed (no npm needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "src" / "qilian" / "api" / "static" / "explorer" / "verify.js"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed (the browser test covers this too)")
def test_bundle_matches_vectors() -> None:
    out = subprocess.run(["node", str(ROOT / "tests" / "js" / "check_verifier.mjs"), str(BUNDLE),
                          str(ROOT / "tests" / "vectors" / "encoding.json")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("ok ")
