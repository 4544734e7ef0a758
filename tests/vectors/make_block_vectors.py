"""Write tests/vectors/blocks.json from block_corpus.compute_corpus() (a consensus change: review the diff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from block_corpus import compute_corpus

if __name__ == "__main__":
    out = Path(__file__).parent / "blocks.json"
    out.write_text(json.dumps(compute_corpus(), indent=1, ensure_ascii=True) + "\n")
    print(f"wrote {out}")
