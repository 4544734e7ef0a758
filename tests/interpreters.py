"""The other supported CPythons, for the tests that compare consensus outputs across interpreters.

`.ci/run` makes a venv per supported version beside `.venv` (`.venv-py312`, `.venv-py313`) with the project
installed; a test that needs one skips, naming what is missing, when it is not there."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUPPORTED = ("3.11", "3.12", "3.13")
"""CPython versions a validator may run (pyproject's requires-python says the same)."""


def get_python(version: str) -> str | None:
    """A Python of ``version`` with the project's dependencies importable, or None."""
    candidates = [ROOT / f".venv-py{version.replace('.', '')}" / "bin" / "python"]
    if version == "3.11":
        candidates.insert(0, ROOT / ".venv" / "bin" / "python")
    for c in candidates:
        if c.exists():
            probe = subprocess.run([str(c), "-c", "import ormsgpack, nacl, lmdb, qilian; import sys; "
                                               "print('%d.%d' % sys.version_info[:2])"],
                                   capture_output=True, text=True, timeout=120)
            if probe.returncode == 0 and probe.stdout.strip() == version:
                return str(c)
    return None
