"""The one exception tree of p2pmarket.

Every error a user can cause is a ``P2PMarketError`` whose message says what is
wrong and, where there is one, what to do next. Errors from plyvel, PyNaCl and
msgpack are translated into this tree at the module that calls them, so callers
(the CLI above all) catch one root and never show a traceback for bad input::

    P2PMarketError
    ├── InvalidRecord        a record broke a rule; ``field`` names the culprit
    ├── InvalidInput         a value given by the user (flag, query, file) is bad
    ├── NotFound             an id that is not in the local cache
    ├── IdentityError        no key, wrong passphrase, unreadable key file
    │   └── WrongPassphrase
    ├── StoreError           the LevelDB store cannot be opened or written
    │   └── StoreLocked      another process (the daemon?) holds the store
    ├── ConfigError          a bad config.toml value or a bad home folder
    ├── Malformed            bytes from outside (a peer, a file) that do not decode
    ├── RateLimited          over the network's publish limit: try again later
    └── NetworkError         a peer cannot be reached, or a look-up failed
        └── OfflineError     the operation needs the network, which is not running
"""

from __future__ import annotations


class P2PMarketError(Exception):
    """Root of every error p2pmarket raises on purpose."""


class InvalidRecord(P2PMarketError):
    """A record failed validation. ``field`` is the offending field, if one is to blame."""

    def __init__(self, field: str | None, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(field, reason)

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class InvalidInput(P2PMarketError):
    """A value a person or a file gave us is unusable."""


class NotFound(P2PMarketError):
    """The thing asked for is not in the local cache."""


class IdentityError(P2PMarketError):
    """The node's identity is missing or cannot be read."""


class WrongPassphrase(IdentityError):
    """The passphrase does not open the key file."""


class StoreError(P2PMarketError):
    """The local store cannot be opened, read or written."""


class StoreLocked(StoreError):
    """Another process holds the store's lock."""


class ConfigError(P2PMarketError):
    """A configuration value or the home folder is unusable."""


class Malformed(P2PMarketError, ValueError):
    """Bytes from outside (a peer, a mailbox, a file) that do not decode into what
    they claim to be. Every decoder of outside bytes raises this (or another error
    of this tree), never a bare TypeError or KeyError: a caller that drops bad
    input must be able to catch exactly that and nothing more. It is also a
    ValueError, so older callers that catch ValueError keep working."""


class RateLimited(P2PMarketError):
    """Publishing more now would go over the limit peers keep per seller (see
    sellerlimit.py): they would drop the records. The message says when to retry."""


class NetworkError(P2PMarketError):
    """A peer could not be reached, or a network operation failed."""


class OfflineError(NetworkError):
    """The operation needs the network, and this node is not running it."""


class InvalidEnvelope(P2PMarketError):
    """A direct-message envelope that is malformed, too large, altered, not for us,
    not signed by its sender, or outside the accepted time window."""


class EnvelopeOutOfTime(InvalidEnvelope):
    """A well-formed envelope whose letter's time is outside the accepted window:
    too old, or (``future``) ahead of our clock by more than the allowed skew.
    Not a sign of malice (clocks drift), so it costs its sender nothing."""

    def __init__(self, message: str, *, future: bool) -> None:
        super().__init__(message)
        self.future = future


class NotYet(P2PMarketError):
    """A letter that cannot be taken yet: what it answers has not arrived (a
    trade move before its offer). It is neither acknowledged nor held against
    its sender, so it comes again."""


class MailboxFull(P2PMarketError):
    """A mailbox holder refused an envelope over one of its quotas."""
