"""Directories that are complete or absent: build in a temp dir, record a manifest of file
hashes, then rename into place. Used for cached model builds and for checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

MANIFEST = "spiral_manifest.json"


def publish_dir(target: Path, fill: Callable[[Path], None]) -> Path:
    """Fill a fresh temp dir beside `target`, write its manifest and rename it to `target`
    (replacing what was there). A crash at any point leaves `target` as it was, or a
    `<name>.tmp-*` dir without a valid manifest that readers ignore."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
    try:
        fill(tmp)
        write_manifest(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_manifest(directory: Path) -> None:
    """Record size and sha256 of every file in `directory` (the completeness marker)."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (directory / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def verify_manifest(directory: Path) -> str | None:
    """Return None if `directory` matches its manifest, else a short description of the problem."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return "no manifest: the build never finished"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return f"unreadable manifest ({exc})"
    for fname, meta in files.items():
        path = directory / fname
        if not path.is_file():
            return f"{fname} is missing"
        if path.stat().st_size != meta["size"]:
            return f"{fname} has {path.stat().st_size} bytes, expected {meta['size']}"
        if _sha256(path) != meta["sha256"]:
            return f"{fname} does not match its checksum"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
