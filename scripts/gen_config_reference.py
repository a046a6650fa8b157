"""Write docs/config-reference.md from the qhubctl config models (run after changing a model)."""

from __future__ import annotations

import sys
from pathlib import Path

from qhubctl.schema import reference_markdown

TARGET = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"

if __name__ == "__main__":
    TARGET.write_text(reference_markdown())
    print(f"wrote {TARGET}", file=sys.stderr)
