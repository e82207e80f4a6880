"""The export file: a stream of signed records that any node can verify.

Format: a msgpack map ``{"format": "p2pmarket-export", "v": 1}`` followed by one
msgpack ``bin`` per record, holding the record's exact signed bytes. Records keep
their own signatures, so a file passed through any hands is checked on import
record by record; the file itself needs no signature.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

import msgpack

from p2pmarket.errors import InvalidInput

_HEADER: Final = {"format": "p2pmarket-export", "v": 1}
# Oversized records are read whole and then rejected one by one with a reason;
# only items beyond this bound break the file.
_MAX_ITEM: Final = 64 * 1024


def write_export(path: Path, items: Iterable[bytes]) -> int:
    """Write records to ``path`` (atomically, via a temporary file); return the count."""
    tmp = path.with_name(path.name + ".partial")
    count = 0
    try:
        with tmp.open("wb") as out:
            packer = msgpack.Packer(use_bin_type=True)
            out.write(packer.pack(_HEADER))
            for data in items:
                out.write(packer.pack(data))
                count += 1
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _items(stream: BinaryIO, origin: str) -> Iterator[bytes]:
    unpacker = msgpack.Unpacker(
        stream, raw=False, max_bin_len=_MAX_ITEM, max_str_len=_MAX_ITEM, max_buffer_size=4 << 20
    )
    try:
        header = next(unpacker, None)
        if header != _HEADER:
            raise InvalidInput(f"{origin} is not a p2pmarket export file")
        for index, item in enumerate(unpacker):
            if not isinstance(item, bytes):
                raise InvalidInput(f"{origin} is damaged at record {index + 1}: not a record")
            yield item
        # The Unpacker ends quietly on a cut-off last item; a file that does not end
        # exactly after a whole record was truncated.
        if unpacker.tell() != os.fstat(stream.fileno()).st_size:
            raise InvalidInput(f"{origin} is truncated: its last record is incomplete")
    except (ValueError, msgpack.UnpackException) as exc:
        raise InvalidInput(f"{origin} is damaged or truncated ({exc})") from None


def read_export(path: Path) -> Iterator[bytes]:
    """Yield the records of an export file.

    The whole file is first read through once to check its framing, so a damaged
    or truncated file is refused before anything from it is stored.
    """
    origin = str(path)
    try:
        with path.open("rb") as stream:
            for _ in _items(stream, origin):
                pass
        with path.open("rb") as stream:
            yield from _items(stream, origin)
    except FileNotFoundError:
        raise InvalidInput(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not an export file") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
