"""Copy the browser assets the book serves itself from node_modules/ into _static_vendor/.

The list of files is tools/vendor_files.txt (one ``source destination`` pair a line,
folders end in ``/``). Nothing third-party is committed: ``npm ci`` fetches the
packages pinned in package-lock.json and this script copies just what the site needs;
``_config.yml`` serves _static_vendor/ as the site's ``_static/`` folder.

Usage: python tools/vendor_assets.py [--check]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tools" / "vendor_files.txt"
SOURCE = ROOT / "node_modules"
TARGET = ROOT / "_static_vendor"


def read_manifest(path: Path = MANIFEST) -> list[tuple[str, str]]:
    """Return the (source, destination) pairs listed in ``path``."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{path.name}:{number}: expected 'source destination', got {line!r}")
        source, destination = parts
        if source.endswith("/") != destination.endswith("/"):
            raise ValueError(f"{path.name}:{number}: a folder must end in '/' on both sides, got {line!r}")
        pairs.append((source, destination))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that every source exists")
    args = parser.parse_args(argv)
    pairs = read_manifest()
    missing = [src for src, _ in pairs if not (SOURCE / src).exists()]
    if missing:
        print("missing in node_modules/ (run `npm ci`): " + ", ".join(missing), file=sys.stderr)
        return 1
    if args.check:
        return 0
    if TARGET.exists():
        shutil.rmtree(TARGET)
    for src, dst in pairs:
        source, destination = SOURCE / src, TARGET / dst
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy2(source, destination)
    print(f"copied {len(pairs)} asset entries into {TARGET.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
