"""Opening the LevelDB store: locking, schema version, and plyvel error translation."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextlib import suppress
from pathlib import Path

import plyvel

from p2pmarket.errors import StoreError, StoreLocked
from p2pmarket.store.layout import SCHEMA_KEY, SCHEMA_VERSION


def open_db(path: Path, *, resident: bool = False) -> plyvel.DB:
    """Open (creating if needed) the store at ``path``; check its schema version.

    ``resident`` is for a process that stays up (the daemon): small buffers, since
    its writes come a few at a time from the network and its memory budget is
    tight. Otherwise buffers are sized for bulk imports by short-lived commands.

    LevelDB allows one process per database and reports a second one as an
    IOError naming the lock file; that becomes :class:`StoreLocked`, whose message
    tells the user what holds it.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(path)
        # LevelDB creates its files with the process umask: none of them is for
        # other users' eyes (own messages, held mail, blocks).
        previous = os.umask(0o077)
        try:
            db = plyvel.DB(
                str(path),
                create_if_missing=True,
                # A 64 MiB memtable halves compactions during bulk ingest (measured
                # 0.53-0.60 -> 0.64x of the raw verify rate); it costs up to 2x64 MiB
                # of RAM while writing, which a resident daemon cannot afford.
                # Compression is off: it cost ~18% of ingest for ~30% of disk.
                write_buffer_size=(4 if resident else 64) << 20,
                lru_cache_size=(8 if resident else 32) << 20,
                bloom_filter_bits=10,
                compression=None,
            )
        finally:
            os.umask(previous)
    except plyvel.IOError as exc:
        raise _open_error(path, str(exc)) from None
    except plyvel.Error as exc:
        raise StoreError(
            f"the store at {path} is damaged ({exc}); restore it from an export or remove it"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot create the store at {path}: {exc.strerror}") from None
    except ValueError:  # plyvel cannot pass a path that is not UTF-8 to LevelDB
        raise StoreError(f"the store path {path} is not valid UTF-8: use another --home") from None
    raw = db.get(SCHEMA_KEY)
    version = int(raw) if raw is not None and raw.isdigit() else None
    if raw is None:
        db.put(SCHEMA_KEY, str(SCHEMA_VERSION).encode(), sync=True)
    elif version is not None and 1 <= version < SCHEMA_VERSION:
        from p2pmarket.store.migrate import upgrade

        try:
            upgrade(db, version)
        except plyvel.Error as exc:
            db.close()
            raise StoreError(f"upgrading the store at {path} failed: {exc}") from None
    elif version != SCHEMA_VERSION:
        assert raw is not None
        db.close()
        raise StoreError(
            f"the store at {path} has schema version {raw.decode(errors='replace')}, "
            f"this p2pmarket reads version {SCHEMA_VERSION}: upgrade p2pmarket"
        )
    return db


def _open_error(path: Path, text: str) -> StoreError:
    """LevelDB's IOError at open, as the user's problem it is. Its lock failure
    reads "lock <path>/LOCK: already held by process" (or "Resource temporarily
    unavailable"); a read-only or foreign home also fails on the LOCK file, with
    the system's reason, and is not "in use"."""
    lowered = text.lower()
    if "lock" in lowered and ("already held" in lowered or "temporarily unavailable" in lowered):
        return StoreLocked(
            f"the store at {path} is in use by another p2pmarket process "
            "(a running daemon?): stop that process, or use another --home"
        )
    for reason, fix in (
        ("read-only file system", "the home is on a read-only file system: use another --home"),
        ("permission denied", f"you may not write it: check the owner and mode of {path}"),
    ):
        if reason in lowered:
            return StoreError(f"cannot open the store at {path}: {fix}")
    return StoreError(f"cannot open the store at {path}: {text}")


def _make_private(path: Path) -> None:
    """Owner-only modes for the store folder and its files (a store made by an
    older release, or copied in, may be readable by all). Best effort: a
    read-only store is reported by LevelDB, with its own reason."""
    with suppress(OSError):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mode & 0o077:
                    os.chmod(entry.path, 0o600)


def write_synced(
    db: plyvel.DB, puts: Mapping[bytes, bytes], deletes: Iterable[bytes], what: str
) -> None:
    """Deletes then puts in one WriteBatch, synced to disk: the user's own data
    (messages, held mail) must survive a crash. ``what`` names it in the error."""
    try:
        with db.write_batch(transaction=True, sync=True) as wb:
            for key in deletes:
                wb.delete(key)
            for key, value in puts.items():
                wb.put(key, value)
    except plyvel.Error as exc:
        raise StoreError(f"writing {what} to the store failed: {exc}") from None
