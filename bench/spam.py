"""Spam costs (issue 13): what the proof-of-work stamp costs each side, side by side.

Everything here runs at the real network's difficulty (:data:`stamp.DEFAULT_BITS`),
set for this benchmark only: the package runs a 1-bit test network for its data
sets (``bench/__init__.py``). Measured on this machine, in one process, one core:

* **the honest side**: signing and stamping one listing, and stamping one
  offline message at the mailbox's base price, many times over. A stamp's cost
  is geometric (each Argon2id evaluation is a coin toss), so the spread is
  reported, not only the mean;
* **the receiver**: checking one stamp (one evaluation, valid or forged) beside
  one ed25519 verify, and ingesting a stamped listing into a real LevelDB store
  beside the same records with the stamp check off;
* **the spammer**: the evaluation rate measured over every stamp solved above
  (not assumed from one evaluation's cost), turned into the time to stamp
  10,000 listings and to fill one recipient's mailbox with a Sybil swarm (the
  mailbox's own price schedule, :func:`mail_bits`), beside what the same swarm
  paid before stamps (key generation only, measured); and what one key gets
  stored through the per-seller publish limit (:mod:`p2pmarket.sellerlimit`)
  in an hour, when it stamps on 1, 8 or 64 cores.
"""

from __future__ import annotations

import hashlib
import math
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.config import Sizes
from bench.report import table
from bench.results import Row, Section, verdict
from bench.stats import count, ms, percentile
from p2pmarket import records
from p2pmarket.crypto import envelope, stamp
from p2pmarket.crypto.peer_id import peer_id_from_public_key
from p2pmarket.crypto.signing import Signer, verify
from p2pmarket.ingest import ingest
from p2pmarket.network.config import NetworkConfig
from p2pmarket.network.mailbox import mail_base_bits, mail_bits, mail_subject
from p2pmarket.records import Listing
from p2pmarket.sellerlimit import SellerLimits
from p2pmarket.store import ListingStore
from p2pmarket.store.mailbox import Quotas

SPAM_LISTINGS: Final = 10_000  # the spammer
HONEST_TARGET: Final = 1.0  # seconds, mean: "well under a second per listing"
SPAMMER_TARGET: Final = 3600.0  # seconds of one core for 10,000: "hours"
HOLDERS: Final = 3  # mailbox holders an offline message is left with
CORES: Final = (1, 8, 64)  # what a spammer might bring: stamps split across cores
SELLERS: Final = 10  # keys the honest samples are spread over


@contextmanager
def network_bits(bits: int) -> Iterator[None]:
    """The network's difficulty as every node reads it (``P2PMARKET_STAMP_BITS``),
    inside this block only: the mailbox's prices are derived from it."""
    old = os.environ.get(stamp.BITS_ENV)
    os.environ[stamp.BITS_ENV] = str(bits)
    try:
        yield
    finally:
        if old is None:
            del os.environ[stamp.BITS_ENV]
        else:
            os.environ[stamp.BITS_ENV] = old


@dataclass(slots=True)
class Solved:
    """Stamps solved one after another: each one's wall time and evaluations,
    and the CPU time over them all."""

    seconds: list[float] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)
    cpu: float = 0.0  # this process's CPU seconds: what a spammer's core pays
    user: float = 0.0  # of which in user space (the rest: the kernel, see run())

    def add(self, seconds: float, cpu: tuple[float, float], nonce: bytes) -> None:
        self.seconds.append(seconds)
        self.cpu += cpu[0]
        self.user += cpu[1]
        # solve() counts up from nonce 0, so the nonce says how many it tried.
        self.evaluations.append(int.from_bytes(nonce[:8], "big") + 1)

    def spread(self) -> str:
        s = self.seconds
        mean = sum(s) / len(s)
        return (
            f"mean {ms(mean)} (p50 {ms(percentile(s, 50))}, p95 {ms(percentile(s, 95))}, "
            f"max {ms(max(s))})"
        )


def _listing(seller: Signer, n: int, now: int) -> Listing:
    nonce = hashlib.blake2b(seller.public_key + n.to_bytes(4, "big"), digest_size=16).digest()
    return Listing(
        seller=seller.public_key,
        nonce=nonce,
        seq=1,
        kind="sell",
        title=f"Jual sepeda lipat bekas no. {n}",
        description="Sepeda lipat, jarang dipakai, rem baru. Bisa COD di Bandung. " * 3,
        price=1_250_000_00,
        currency="IDR",
        quantity=1,
        category="sports",
        tags=("sepeda", "lipat"),
        location="Bandung",
        created=now - 60,
        expires=now + 30 * 86400,
    )


def _cpu() -> tuple[float, float]:
    """CPU seconds of this process so far: all, and in user space."""
    return time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_utime


def _since(start: tuple[float, float]) -> tuple[float, float]:
    now = _cpu()
    return now[0] - start[0], now[1] - start[1]


def _each(fn: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of each of ``runs`` calls: what a person waits."""
    found = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        found.append(time.perf_counter() - t0)
    return found


def _per_item(fn: Callable[[], object], items: int, runs: int = 5) -> float:
    """CPU seconds per item of ``fn``, the median of ``runs``: a receiver's cost
    is CPU, and other work on a shared machine stretches wall time, not CPU."""
    found = []
    for _ in range(runs):
        c0 = time.process_time()
        fn()
        found.append(time.process_time() - c0)
    return percentile(found, 50) / items


def _ingest_each(data: list[bytes], home: Path, now: int, bits: int, runs: int = 5) -> float:
    """CPU seconds per record to ingest ``data`` into a fresh store (inline
    verify, as a node's gossip path checks one record at a time), the median of
    ``runs`` after one to warm up."""
    found = []
    for _ in range(runs + 1):
        shutil.rmtree(home, ignore_errors=True)
        with ListingStore(home) as store, network_bits(bits):
            c0 = time.process_time()
            report = ingest(store, data, now, parallel=False)
            found.append(time.process_time() - c0)
        assert report.added == len(data), report.rejected[:3]
    return percentile(found[1:], 50) / len(data)


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s" if seconds >= 1 else ms(seconds)


def through_limit(offered: float, seconds: float = 3600.0) -> tuple[int, int]:
    """Records one key offers in ``seconds`` at ``offered`` a second, and how
    many of them a node stores: the node's own per-seller limit (gossip path,
    default config), its clock stepped rather than waited for."""
    config = NetworkConfig()
    limits = SellerLimits(config.seller_rate, config.seller_burst, time.monotonic)
    key, stored, made = bytes(32), 0, int(offered * seconds) + 1  # at 0 and at the end
    for i in range(made):
        now = i / offered
        if limits.allows(key, now):
            limits.charge(key, now)
            stored += 1
    return made, stored


def run(sizes: Sizes, data_dir: Path) -> Section:
    network = stamp.DEFAULT_BITS
    bits = network if sizes.spam_bits is None else sizes.spam_bits
    n = sizes.spam_stamps
    now = int(time.time())
    sellers = [
        Signer(hashlib.sha256(f"bench-spam-seller:{i}".encode()).digest()) for i in range(SELLERS)
    ]

    # -- the honest side ------------------------------------------------------
    listings, signed = Solved(), []
    for i in range(n):
        draft = _listing(sellers[i % SELLERS], i, now)
        t0, c0 = time.perf_counter(), _cpu()
        record = records.sign(draft, sellers[i % SELLERS].sign, bits=bits)
        listings.add(time.perf_counter() - t0, _since(c0), record.stamp)
        signed.append(record)
    unstamped = _each(
        lambda: records.sign(_listing(sellers[0], 0, now), sellers[0].sign, bits=0), 200
    )

    sender, recipient = sellers[0], sellers[1]
    with network_bits(bits):
        base = mail_base_bits()
    mail, mail_seal = Solved(), []
    for i in range(n):
        t0 = time.perf_counter()
        sealed = envelope.seal(sender, recipient.public_key, "text", b"Masih ada? %d" % i, now)[1]
        t1, c1 = time.perf_counter(), _cpu()
        nonce = stamp.solve(mail_subject(sealed), base)
        mail_seal.append(t1 - t0)
        mail.add(time.perf_counter() - t1, _since(c1), nonce)

    # -- the spammer's rate: every evaluation solved above, one core ----------
    evaluations = sum(listings.evaluations) + sum(mail.evaluations)
    # Per CPU second, not per wall second: other work on a shared machine
    # stretches the honest side's wall time but not what a core can do.
    rate = evaluations / (listings.cpu + mail.cpu)
    wall_rate = evaluations / (sum(listings.seconds) + sum(mail.seconds))
    # libsodium's Argon2id faults in fresh pages for its 64 KiB every evaluation
    # (16 minor faults each, measured while writing this); the kernel's
    # share of the CPU is what a spammer's own Argon2, reusing one buffer, saves.
    tuned = evaluations / (listings.user + mail.user)
    tight = max(2000, n * 10)
    alone = _per_item(
        lambda: [stamp.work(b"s" * 64, i.to_bytes(16, "big")) for i in range(tight)], tight, 1
    )

    # -- the receiver -----------------------------------------------------------
    checks = [(r.signature, r.stamp) for r in signed] * max(1, 2000 // n)
    check = _per_item(lambda: [stamp.check(s, p, bits) for s, p in checks], len(checks))
    forged = [(s, os.urandom(stamp.NONCE_SIZE)) for s, _ in checks]
    refuse = _per_item(lambda: [stamp.check(s, p, bits) for s, p in forged], len(forged))
    triples = [(r.seller, records.signed_message(r), r.signature) for r in signed]
    triples *= max(1, 2000 // n)
    verified = _per_item(lambda: [verify(*t) for t in triples], len(triples))
    data = [records.encode(r) for r in signed]
    with network_bits(bits):
        validate = _per_item(lambda: [records.validate(d, now) for d in data], len(data))
    home = data_dir / "spam-store"
    ingested = _ingest_each(data, home, now, bits)
    ingested_free = _ingest_each(data, home, now, 0)
    shutil.rmtree(home, ignore_errors=True)

    # -- Sybil identities: all a swarm paid before stamps ---------------------
    def identity() -> str:
        return peer_id_from_public_key(Signer.generate().public_key)

    keygen = _per_item(lambda: [identity() for _ in range(1000)], 1000)

    # -- the spammer's bills at the network's difficulty ------------------------
    spam_seconds = SPAM_LISTINGS * 2**network / rate
    quotas = Quotas()
    with network_bits(network):
        schedule = [mail_bits(held) for held in range(quotas.per_recipient)]
        network_base = mail_base_bits()
    fill_seconds = sum(2**b for b in schedule) / rate
    swarm = math.ceil(quotas.per_recipient / quotas.per_sender)
    honest_message = 2**network_base / rate

    per_core = rate / 2**network  # listings a second one core stamps
    through = [(c, *through_limit(c * per_core)) for c in CORES]
    config = NetworkConfig()

    section = Section("Spam costs (issue 13): the stamp, honest side and spammer side")
    label = f"{bits} bits" + ("" if bits == network else f" (network: {network})")
    section.rows += [
        Row(
            f"honest seller: sign + stamp one listing, {label}, {count(n)} listings",
            listings.spread(),
            f"sign without a stamp: {ms(percentile(unstamped, 50))}",
            f"mean < {HONEST_TARGET:.0f} s",
            verdict(sum(listings.seconds) / n < HONEST_TARGET),
        ),
        Row(
            f"honest sender: stamp one offline message at the base price, {base} bits",
            mail.spread(),
            f"seal the envelope: {ms(percentile(mail_seal, 50))}",
            "info",
            "info",
        ),
        Row(
            "receiver: check one stamp (valid / forged)",
            f"{ms(check)} / {ms(refuse)}",
            f"one ed25519 verify: {ms(verified)}",
            "info",
            "info",
        ),
        Row(
            "receiver: validate / ingest one stamped listing (LevelDB, inline)",
            f"{ms(validate)} / {ms(ingested)}",
            f"ingest, stamp check off: {ms(ingested_free)}",
            "info",
            "info",
        ),
        Row(
            f"spammer: stamp {count(SPAM_LISTINGS)} listings at {network} bits, one core",
            f"{_hours(spam_seconds)} ({count(rate)} evaluations/s measured)",
            f"receivers check them: {_hours(SPAM_LISTINGS * check)} each",
            f"≥ {SPAMMER_TARGET / 3600:.0f} h",
            verdict(spam_seconds >= SPAMMER_TARGET),
        ),
        Row(
            f"Sybil swarm: fill one recipient's mailbox ({quotas.per_recipient} at each of "
            f"{HOLDERS} holders, {swarm} keys), one core",
            _hours(fill_seconds),
            f"without stamps: {swarm} keys = {ms(swarm * keygen)}",
            "info",
            "info",
        ),
        Row(
            f"per-seller limit: one key's listings stored in an hour (gossip, {CORES[-1]} cores)",
            f"{count(through[-1][2])} of {count(through[-1][1])} stamped",
            f"one core stamps {count(through[0][1])} an hour; all stored",
            "info",
            "info",
        ),
    ]

    first = sum(listings.seconds) / n
    section.details += [
        "The honest side's spread (a stamp's work is geometric: mean 2**bits"
        " evaluations, median ln 2 of that, p95 about 3x the mean):\n\n"
        + table(
            ["", "listings", "offline messages"],
            [
                ["bits", str(bits), str(base)],
                ["samples", count(n), count(n)],
                ["mean", ms(first), ms(sum(mail.seconds) / n)],
                *[
                    [f"p{q}", ms(percentile(listings.seconds, q)), ms(percentile(mail.seconds, q))]
                    for q in (50, 95, 99)
                ],
                ["max", ms(max(listings.seconds)), ms(max(mail.seconds))],
                [
                    "evaluations, mean (expected)",
                    f"{count(sum(listings.evaluations) / n)} ({count(2**bits)})",
                    f"{count(sum(mail.evaluations) / n)} ({count(2**base)})",
                ],
            ],
        ),
        f"The spammer pays what {count(SPAM_LISTINGS)} honest listings cost, no more and no"
        f" less: at the honest mean measured here ({ms(first)} at {bits} bits) that is"
        f" {_hours(SPAM_LISTINGS * first)}. The issue's two wishes, well under a second for"
        f" the seller and hours for {count(SPAM_LISTINGS)}, pull against each other: two"
        f" hours of one core would need a mean of {ms(7200 / SPAM_LISTINGS)} a listing.",
        f"The spammer's rate is every evaluation solved above ({count(evaluations)}) over"
        f" the CPU time spent solving: {count(rate)} a second on one core"
        f" ({ms(1 / rate)} each; {count(wall_rate)} per wall-clock second; Argon2id alone"
        f" in a tight loop: {ms(alone)} of CPU). {1 - rate / tuned:.0%} of that CPU is the"
        " kernel's: libsodium's Argon2id faults in fresh pages for its 64 KiB on every"
        " evaluation. A spammer's own Argon2id that reuses one buffer would save it,"
        " reaching the user-space rate,"
        f" {count(tuned)} a second: {count(SPAM_LISTINGS)} listings in"
        f" {_hours(SPAM_LISTINGS * 2**network / tuned)} on one core. N cores"
        " divide every figure by N:\n\n"
        + table(
            ["cores", f"{count(SPAM_LISTINGS)} listings", "one mailbox filled"],
            [[str(c), _hours(spam_seconds / c), _hours(fill_seconds / c)] for c in CORES],
        ),
        f"The per-seller publish limit (`sellerlimit.py`, {config.seller_burst:g} at once,"
        f" then {config.seller_rate:g} a second per author key, on the gossip path) against"
        " one key stamping on N cores, an hour simulated through the node's own bucket:\n\n"
        + table(
            ["cores", "stamped in an hour", "stored by each node"],
            [[str(c), count(made), count(kept)] for c, made, kept in through],
        )
        + "\n\nThe limit caps one key at about"
        f" {count(config.seller_burst + 3600 * config.seller_rate)} in its first hour and"
        f" {count(3600 * config.seller_rate)} an hour after; it binds a spammer from"
        f" {math.floor(config.seller_rate / per_core) + 1} cores on. Keys are free"
        f" ({ms(keygen)} each), so a swarm of keys is held back by the stamp alone: the"
        " limit stops one key from flooding, the stamp prices every record.",
        "The mailbox's price schedule (`mail_bits`) at the network's difficulty, from an"
        " empty mailbox to the quota, for one holder:\n\n"
        + table(
            ["envelopes held", "bits", "evaluations", "one core"],
            _schedule_rows(schedule, rate),
        )
        + f"\n\nA stamp is over the envelope, not the holder, so the same {quotas.per_recipient}"
        f" stamped envelopes fill all {HOLDERS} holders: the swarm's bill is one schedule,"
        f" {_hours(fill_seconds)}, not {HOLDERS}x ({_hours(HOLDERS * fill_seconds)}) — the"
        f" same rule that lets an honest sender pay once ({_hours(honest_message)}) for"
        f" {HOLDERS} holders. {quotas.per_sender} envelopes per depositor per recipient"
        f" means {swarm} keys; one key and its peer id cost {ms(keygen)} to make. The fill"
        f" is {_hours(fill_seconds)} / {_hours(honest_message)} ="
        f" {count(fill_seconds / honest_message)} honest messages' work.",
    ]
    return section


def _schedule_rows(schedule: list[int], rate: float) -> list[list[str]]:
    rows = []
    start = 0
    for held in range(1, len(schedule) + 1):
        if held == len(schedule) or schedule[held] != schedule[start]:
            bits, many = schedule[start], held - start
            rows.append(
                [
                    f"{start}-{held - 1}",
                    str(bits),
                    count(many * 2**bits),
                    _hours(many * 2**bits / rate),
                ]
            )
            start = held
    total = sum(2**b for b in schedule)
    rows.append([f"all {len(schedule)}", "", count(total), _hours(total / rate)])
    return rows
