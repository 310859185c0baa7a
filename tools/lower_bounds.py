"""Write pip constraints that pin every requirement to its lower bound.

    python tools/lower_bounds.py > lower-bounds.txt
    pip install -r requirements-dev.txt -c lower-bounds.txt

Every ``name>=X`` (and ``name==X``) line of requirements.txt becomes ``name==X``, so pip
installs the oldest releases the book claims to support; the weekly workflow
(.github/workflows/weekly.yml, job test-lowest) runs every chapter with them. Lines
without a lower bound are left out (pip resolves those freely).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_BOUND = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._\-]*)(\[[^\]]*\])?\s*(?:>=|==)\s*([0-9][^,;\s#]*)")


def lower_bounds(text: str) -> list[str]:
    """``name==version`` for every requirement line of ``text`` with a lower bound or an exact pin."""
    if not isinstance(text, str):
        raise TypeError(f"expected the text of a requirements file, got {type(text).__name__}")
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        if not line.strip() or line.strip().startswith("-"):
            continue
        match = _BOUND.match(line)
        if match:
            pins.append(f"{match.group(1)}=={match.group(3)}")
    return pins


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else ROOT / "requirements.txt"
    print("\n".join(lower_bounds(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
