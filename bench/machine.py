"""The machine and code a run measured, so that figures can be compared over time."""

from __future__ import annotations

import hashlib
import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import msgpack
import nacl
import plyvel

_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return done.stdout.strip()


def code_version() -> str:
    """The commit, and whether p2pmarket/ had uncommitted changes when measured."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--", "p2pmarket")
    return f"{commit}" + (
        f" + uncommitted changes in {len(dirty.splitlines())} files" if dirty else ""
    )


def source_hash() -> str:
    """A hash of every p2pmarket source file, to notice edits made during a run."""
    digest = hashlib.sha256()
    for path in sorted((_ROOT / "p2pmarket").rglob("*.py")):
        digest.update(path.as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def describe() -> list[tuple[str, str]]:
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu_model()),
        ("Cores", str(os.cpu_count())),
        ("Load average at start", "{:.2f}, {:.2f}, {:.2f} (1, 5, 15 min)".format(*os.getloadavg())),
        ("Python", platform.python_version()),
        ("SQLite", sqlite3.sqlite_version),
        (
            "Libraries",
            f"plyvel {plyvel.__version__} (LevelDB {plyvel.__leveldb_version__}),"
            f" PyNaCl {nacl.__version__}, msgpack {'.'.join(map(str, msgpack.version))}",
        ),
        ("Code", code_version()),
    ]
