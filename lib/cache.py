"""The suite's on-disk cache: folders built once, verified on every use, rebuilt when they fail.

    folder = verified_folder(cache_root() / "toy" / "repeat-1a2b", build=lambda staging: train(staging))

`build(staging)` writes the folder's files into an empty staging folder and may return extra
metadata for the manifest. Then the manifest (every file's size and sha256, plus that metadata) is
written last and the staging folder renamed onto `folder` in one step, so a reader never sees a
half-written cache: a folder either has a manifest its files match, or it is rebuilt. A file lock
beside the folder makes parallel workers (pytest-xdist) build it once; the others wait, then
verify and use it. Debris of an interrupted build (`<name>.partial.*`) is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from attnclaims.progress import note

MANIFEST = "manifest.json"


def cache_root() -> Path:
    """The folder holding this project's cached models: `$XDG_CACHE_HOME/attnclaims`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "attnclaims"


def verified_folder(folder: Path, build: Callable[[Path], dict | None], what: str = "cached folder") -> Path:
    """`folder`, verified against its manifest; built by `build(staging)` first if it is missing or fails.

    `what` names the folder in the message printed when a corrupted copy is rebuilt.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if verify_folder(folder):
            return folder
        if folder.exists():
            note(f"{what} at {folder} does not match its manifest: rebuilding it")
            shutil.rmtree(folder)
        with staged_folder(folder) as staging:
            meta = build(staging) or {}
            write_manifest(staging, **meta)
    return folder


def verify_folder(folder: Path) -> bool:
    """True when every file in the folder's manifest is present with its recorded size and sha256."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return False
    for name, meta in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["size"] or sha256_file(path) != meta["sha256"]:
            return False
    return True


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, **meta) -> None:
    """Record every file's size and sha256 (plus `meta`) in the folder's manifest, written last."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (folder / MANIFEST).write_text(json.dumps({**meta, "files": files}, indent=1))


@contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A temporary sibling of `folder` that becomes `folder` in one rename when the block succeeds."""
    staging = Path(tempfile.mkdtemp(prefix=folder.name + ".partial.", dir=folder.parent))
    try:
        yield staging
        # mkdtemp and some writers (safetensors) create owner-only files: a shared cache needs them readable.
        for path in staging.iterdir():
            if path.is_file():
                os.chmod(path, 0o644)
        os.chmod(staging, 0o755)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
