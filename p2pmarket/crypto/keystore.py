"""The identity key file: one ed25519 seed, sealed with a passphrase or stored plain.

File format (msgpack map, written atomically with mode 0600)::

    {"format": "p2pmarket-key", "v": 1, "public_key": <32 bytes>,
     "kdf": "argon2id", "opslimit": int, "memlimit": int, "salt": <16 bytes>,
     "box": <SecretBox ciphertext of the seed>}          # encrypted
    {"format": "p2pmarket-key", "v": 1, "public_key": <32 bytes>,
     "kdf": "none", "seed": <32 bytes>}                   # --no-passphrase

The public key is kept in the clear so that read-only commands (``id``, ``search``)
never ask for the passphrase. The KDF costs are stored in the file so that they can
be raised later without breaking old files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgpack

from p2pmarket.errors import IdentityError, WrongPassphrase
from p2pmarket.quoting import shown

if TYPE_CHECKING:
    from p2pmarket.crypto.signing import Signer

# PyNaCl is imported inside the functions that seal or unseal, so that reading the
# public key (``p2pmarket id``, ``search``) does not load libsodium.

_FORMAT: Final = "p2pmarket-key"
# libsodium's "interactive" Argon2id costs (opslimit 2, 64 MiB): ~0.1-0.2 s per
# unlock. The daemon unlocks once; the CLI once per signing command.
OPSLIMIT: Final = 2
MEMLIMIT: Final = 64 * 1024 * 1024
# libsodium's "sensitive" costs (4, 1 GiB) are the most a key file may ask for.
_MAX_OPSLIMIT: Final = 4
_MAX_MEMLIMIT: Final = 1 << 30


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    import nacl.pwhash
    import nacl.secret

    return bytes(
        nacl.pwhash.argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE,
            passphrase.encode("utf-8"),
            salt,
            opslimit=opslimit,
            memlimit=memlimit,
        )
    )


def seal(signer: Signer, passphrase: str | None) -> bytes:
    """The bytes of a key file for ``signer``; plain when ``passphrase`` is None."""
    import nacl.pwhash
    import nacl.secret
    import nacl.utils

    doc: dict[str, Any] = {"format": _FORMAT, "v": 1, "public_key": signer.public_key}
    if passphrase is None:
        doc |= {"kdf": "none", "seed": signer.seed()}
    else:
        if not passphrase:
            raise IdentityError("the passphrase is empty: choose one, or use --no-passphrase")
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = _derive(passphrase, salt, OPSLIMIT, MEMLIMIT)
        doc |= {
            "kdf": "argon2id",
            "opslimit": OPSLIMIT,
            "memlimit": MEMLIMIT,
            "salt": salt,
            "box": bytes(nacl.secret.SecretBox(key).encrypt(signer.seed())),
        }
    data: bytes = msgpack.packb(doc, use_bin_type=True)
    return data


class KeyFile:
    """A parsed key file: the public key at once, the signer on :meth:`unlock`."""

    def __init__(self, data: bytes, origin: str) -> None:
        self._origin = origin
        try:
            doc = msgpack.unpackb(data, raw=False)
        except (ValueError, msgpack.UnpackException):
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("v") != 1:
            raise IdentityError(f"{origin} is not a p2pmarket key file")
        public_key = doc.get("public_key")
        if not isinstance(public_key, bytes) or len(public_key) != 32:
            raise IdentityError(f"{origin} is damaged: its public key is unreadable")
        self._doc = doc
        self.public_key: bytes = public_key

    @property
    def encrypted(self) -> bool:
        return bool(self._doc.get("kdf") != "none")

    def unlock(self, passphrase: str | None) -> Signer:
        import nacl.exceptions
        import nacl.secret

        from p2pmarket.crypto.signing import Signer

        doc = self._doc
        if doc.get("kdf") == "none":
            seed = doc.get("seed")
        elif doc.get("kdf") == "argon2id":
            if passphrase is None:
                raise IdentityError(
                    "the key is encrypted: give its passphrase at the prompt "
                    "or in P2PMARKET_PASSPHRASE"
                )
            salt, ops, mem, box = (doc.get(k) for k in ("salt", "opslimit", "memlimit", "box"))
            # Checked before use: a crafted file must not make Argon2 run for hours
            # or pass a damaged file off as a wrong passphrase.
            if not (
                isinstance(salt, bytes)
                and len(salt) == 16
                and type(ops) is int
                and 1 <= ops <= _MAX_OPSLIMIT
                and type(mem) is int
                and 8192 <= mem <= _MAX_MEMLIMIT
                and isinstance(box, bytes)
            ):
                raise IdentityError(f"{self._origin} is damaged: its sealed key is unreadable")
            key = _derive(passphrase, salt, ops, mem)
            try:
                seed = nacl.secret.SecretBox(key).decrypt(box)
            except nacl.exceptions.CryptoError:
                raise WrongPassphrase(f"wrong passphrase for {self._origin}") from None
        else:
            kdf = shown(doc.get("kdf"))
            raise IdentityError(f"{self._origin} uses an unknown key protection {kdf}")
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise IdentityError(f"{self._origin} is damaged: the key is not 32 bytes")
        signer = Signer(seed)
        if signer.public_key != self.public_key:
            raise IdentityError(f"{self._origin} is damaged: the key does not match its public key")
        return signer


def write_key_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (0600).

    ``O_NOFOLLOW``: a symlink planted at the temporary name is refused rather
    than followed (the seed would be written wherever it points)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_key_file(path: Path) -> KeyFile:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"no identity at {path}: run `p2pmarket init` first") from None
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror}") from None
    return KeyFile(data, str(path))
