"""Our LevelDB store, filled from a dataset, and cached between runs.

Setup is not what is measured, so it skips signature checks: listings are decoded
(every rule but the signature) and written with ``ListingStore.put_many`` in
batches, which is the store's own write path. The store is then compacted, so
searches do not race a background compaction and LevelDB is measured in the same
settled state as the optimized SQLite index it is compared with.

A built store is only valid for the code that built it: its directory name holds a
fingerprint of the modules that decide what is indexed, so an edit to them
rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Final, TypeVar

from bench.data import Dataset
from p2pmarket.home import Home
from p2pmarket.node import init_home
from p2pmarket.store import ListingStore

BATCH: Final = 2000
_INDEXING_CODE: Final = ("records.py", "text.py", "store")
_MARKER: Final = "bench-complete.json"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Built:
    """A ready store (or database file) and how long building it took."""

    path: Path
    seconds: float
    cached: bool


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def code_fingerprint() -> str:
    """A short hash of the p2pmarket sources that decide the index contents."""
    import p2pmarket

    root = Path(p2pmarket.__file__).parent
    digest = hashlib.sha256()
    for name in _INDEXING_CODE:
        target = root / name
        for path in sorted(target.rglob("*.py")) if target.is_dir() else [target]:
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def drop_stale(data_dir: Path, prefix: str, keep: Path) -> None:
    """Remove older builds of the same dataset size and seed (they can be GBs)."""
    for old in data_dir.glob(prefix + "*"):
        if old != keep:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def our_home(ds: Dataset, data_dir: Path) -> Built:
    """A home (no passphrase) whose store holds every listing of ``ds``."""
    prefix = f"home-n{ds.count}-s{ds.seed}-"
    root = data_dir / f"home-{ds.key}-{code_fingerprint()}"
    marker = root / _MARKER
    if marker.exists():
        return Built(root, float(json.loads(marker.read_text())["seconds"]), cached=True)
    drop_stale(data_dir, prefix, root)
    shutil.rmtree(root, ignore_errors=True)
    init_home(root, None)
    now = int(time.time())
    started = time.perf_counter()
    with ListingStore(Home(root).store_dir) as store:
        for batch in batched(ds.listings(now), BATCH):
            store.put_many(batch)
        store.db.compact_range()
    seconds = time.perf_counter() - started
    marker.write_text(json.dumps({"seconds": seconds, "count": ds.count}))
    return Built(root, seconds, cached=False)
