"""A network of hosts on one machine: Linux network namespaces, veth pairs, NAT routers.

Each host is a network namespace with one interface (``eth0``) and runs one real
``p2pmarket daemon`` as its own process, so daemons meet each other only through
the addresses and routers built here, as machines on the internet would:

- the "internet" is a bridge in a namespace of its own; public hosts and the WAN
  side of every router sit on it with addresses from 203.0.113.0/24 (TEST-NET-3,
  a documentation range that is never routed);
- a router is a namespace with a ``wan`` veth on the internet and a ``lan`` bridge
  for the hosts behind it (192.168.<k>.0/24, as home routers hand out), doing
  nftables masquerade and dropping connections that start from the WAN side
  (``iifname "wan" ct state new drop``), as home routers do. Two kinds:
  ``"eim"``: plain masquerade, port-preserving, so a LAN socket keeps one public
  port whoever it talks to (endpoint-independent mapping: hole punching can work);
  ``"symmetric"``: ``masquerade random,fully-random``, a fresh public port per
  destination (hole punching cannot predict it: the connection stays relayed).

No namespace has a route off the machine (none has a veth in the root namespace
or a default route out of the internet bridge), so every packet stays between the
namespaces made here. Names carry the creating process id (``pm<pid>-…``), so
two runs never collide and :func:`sweep_stale` can remove what a killed run left.
``tc netem`` is missing on these machines (no sch_netem), so links have no delay;
see BENCHMARKS.md ("A network of hosts").

Used by tests/netns/ and by ``python -m bench.netscale``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from p2pmarket.node import init_home
from p2pmarket.rpc.client import Client

NatKind = Literal["eim", "symmetric"]

SCRIPT: Final = Path(sys.executable).parent / "p2pmarket"
PORT: Final = 4690
INTERNET: Final = "203.0.113"  # TEST-NET-3: documentation only, never routed
_ROUTER_BASE: Final = 200  # routers' WAN addresses: .200, .201, …
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 10.0
_NAME = re.compile(r"^pm(\d+)-")


class RigUnavailable(Exception):
    """This machine (or user) cannot build namespaces: the tests skip with this reason."""


def _ip(*args: str) -> None:
    _run("ip", *args)


def _run(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def unavailable_reason() -> str | None:
    """Why namespaces cannot be built here, or None when they can (tried for real)."""
    if os.geteuid() != 0:
        return "needs root (ip netns, veth, nftables)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"pm{os.getpid()}-probe"
    try:
        _ip("netns", "add", probe)
    except (RuntimeError, OSError) as exc:
        return f"ip netns is not allowed here: {exc}"
    try:
        _ip("-n", probe, "link", "add", "name", "probe0", "type", "veth", "peer", "name", "probe1")
    except RuntimeError as exc:
        return f"veth pairs are not allowed here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def ensure_nft() -> None:
    """Install nftables from Debian's packages when ``nft`` is missing."""
    if shutil.which("nft"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "install", "-y", "nftables"], ["apt-get", "update"]):
        subprocess.run(command, capture_output=True, env=env, timeout=300, check=False)
        if shutil.which("nft"):
            return
    subprocess.run(
        ["apt-get", "install", "-y", "nftables"],
        capture_output=True,
        env=env,
        timeout=300,
        check=False,
    )
    if not shutil.which("nft"):
        raise RigUnavailable("nft is missing and `apt-get install -y nftables` did not bring it")


def sweep_stale() -> list[str]:
    """Delete the namespaces of earlier runs whose process is gone (a killed run)."""
    removed = []
    for name in _run("ip", "netns", "list").split():
        match = _NAME.match(name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        removed.append(name)
    return removed


def _env(extra: dict[str, str]) -> dict[str, str]:
    # No daemon may pick up the developer's own home or passphrase; the stamp
    # difficulty is the test network's (tests/conftest.py), tiny.
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PMARKET_")}
    env["P2PMARKET_STAMP_BITS"] = "1"
    env.update(extra)
    return env


@dataclass
class Router:
    """A NAT router: ``wan_ip`` on the internet, ``192.168.<index>.1`` on its LAN."""

    name: str
    ns: str
    kind: NatKind
    index: int
    wan_ip: str
    hosts: int = 0

    @property
    def lan_prefix(self) -> str:
        return f"192.168.{self.index}"


@dataclass
class Host:
    """One machine: a namespace, its address, a home and (once started) a daemon."""

    name: str
    ns: str
    ip: str
    home: Path
    peer_id: str
    router: Router | None = None
    process: subprocess.Popen[str] | None = None
    log: Path | None = None
    started_at: float = 0.0
    ready_at: float = 0.0
    _lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The address it listens on (behind a NAT: its LAN address, not dialable)."""
        return f"/ip4/{self.ip}/tcp/{PORT}/p2p/{self.peer_id}"

    @property
    def public(self) -> bool:
        return self.router is None

    @property
    def socket(self) -> Path:
        return self.home / "node.sock"

    def client(self, timeout: float = 10.0) -> Client:
        return Client.open(self.socket, timeout=timeout)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``p2pmarket --home HOME ARGS…`` as a user of this host would type it (the
        control socket is a file: the command itself need not enter the namespace)."""
        return subprocess.run(
            [str(SCRIPT), "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            env=_env({}),
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str) -> Any:
        result = self.cli(*args, "--json")
        if result.returncode != 0:
            raise AssertionError(f"{self.name}: {args}: {result.stderr.strip()}")
        return json.loads(result.stdout)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.cli_json("status")
        return doc

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def net_bytes(self) -> tuple[int, int]:
        """(received, sent) bytes on this host's ``eth0`` so far, from the kernel's
        counters of its namespace (frames: headers, handshakes and retries included)."""
        out = _run("ip", "-n", self.ns, "-j", "-s", "link", "show", "eth0")
        stats = json.loads(out)[0]["stats64"]
        return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])

    def stderr(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""


class Rig:
    """Namespaces, links and daemons of one run; :meth:`close` removes all of them.

    Use as a context manager. Everything made is recorded as it is made, so a
    failure half-way still cleans up what exists.
    """

    def __init__(self, root: Path | None = None) -> None:
        ensure_nft()
        self.prefix = f"pm{os.getpid()}-{os.urandom(2).hex()}"
        self.root = root or Path(tempfile.mkdtemp(prefix="pmnet-", dir="/tmp"))
        self._namespaces: list[str] = []
        self.hosts: list[Host] = []
        self.routers: list[Router] = []
        self._next_public = 10
        self._closed = False
        try:
            self.internet = self._namespace("net")
            _ip("-n", self.internet, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.internet, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building --------------------------------------------------------------

    def _namespace(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def _plug(self, ns: str, inner: str, ip: str, into: str, bridge: str, tag: str) -> None:
        """A veth from ``ns`` (named ``inner``, holding ``ip``/24) to ``bridge`` in ``into``."""
        _ip("-n", ns, "link", "add", inner, "type", "veth", "peer", "name", tag, "netns", into)
        _ip("-n", into, "link", "set", tag, "master", bridge)
        _ip("-n", into, "link", "set", tag, "up")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", inner)
        _ip("-n", ns, "link", "set", inner, "up")

    def add_router(self, kind: NatKind) -> Router:
        index = len(self.routers) + 1
        name = f"r{index}"
        ns = self._namespace(name)
        router = Router(name, ns, kind, index, f"{INTERNET}.{_ROUTER_BASE + index - 1}")
        self._plug(ns, "wan", router.wan_ip, self.internet, "br0", f"w{index}")
        _ip("-n", ns, "link", "add", "lan", "type", "bridge")
        _ip("-n", ns, "addr", "add", f"{router.lan_prefix}.1/24", "dev", "lan")
        _ip("-n", ns, "link", "set", "lan", "up")
        _run("ip", "netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        mapping = "masquerade" if kind == "eim" else "masquerade random,fully-random"
        _run(
            "ip",
            "netns",
            "exec",
            ns,
            "nft",
            "-f",
            "-",
            stdin=f"""
table ip nat {{
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" {mapping}
  }}
}}
table inet filter {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "wan" ct state new drop
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "wan" ct state new drop
  }}
}}
""",
        )
        self.routers.append(router)
        return router

    def add_host(self, router: Router | None = None) -> Host:
        """A new host on the internet, or behind ``router``; its home is initialised."""
        index = len(self.hosts) + 1
        name = f"h{index}"
        ns = self._namespace(name)
        if router is None:
            if self._next_public >= _ROUTER_BASE:
                raise RuntimeError("the rig's internet holds 190 public hosts at most")
            ip = f"{INTERNET}.{self._next_public}"
            self._next_public += 1
            self._plug(ns, "eth0", ip, self.internet, "br0", f"v{index}")
        else:
            router.hosts += 1
            ip = f"{router.lan_prefix}.{router.hosts + 9}"
            self._plug(ns, "eth0", ip, router.ns, "lan", f"v{index}")
            _ip("-n", ns, "route", "add", "default", "via", f"{router.lan_prefix}.1")
        home = self.root / name
        peer_id = init_home(home, None)
        host = Host(name, ns, ip, home, peer_id, router)
        self.hosts.append(host)
        return host

    # -- daemons ---------------------------------------------------------------

    def start(
        self,
        host: Host,
        bootstrap: list[Host] | tuple[Host, ...] = (),
        extra: tuple[str, ...] = (),
        *,
        user_defaults: bool = False,
    ) -> None:
        """Start ``host``'s daemon (without waiting: see :meth:`wait_ready`), with
        ``extra`` daemon options (``-v`` logs the network to ``host.log``).
        ``user_defaults``: as a user runs it (0.0.0.0, mDNS on), not on the
        host's own address with mDNS off."""
        args = ["ip", "netns", "exec", host.ns, str(SCRIPT), "--home", str(host.home), "daemon"]
        if not user_defaults:
            args += ["--listen", f"/ip4/{host.ip}/tcp/{PORT}", "--no-mdns"]
        for peer in bootstrap:
            args += ["--bootstrap", peer.address]
        args += extra
        host.log = self.root / f"{host.name}.log"
        host._lines = []
        with host.log.open("a") as log:
            host.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_env({}),
            )
        host.started_at = time.monotonic()
        host.ready_at = 0.0
        threading.Thread(target=self._pump, args=(host, host.process), daemon=True).start()

    @staticmethod
    def _pump(host: Host, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            host._lines.append(line.rstrip("\n"))
            if line.startswith("control socket ") and process is host.process:
                host.ready_at = time.monotonic()
        process.stdout.close()

    def wait_ready(self, hosts: list[Host], timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for host in hosts:
            while not host.ready_at:
                if host.process is None or host.process.poll() is not None:
                    raise RuntimeError(f"the daemon of {host.name} exited:\n{host.stderr()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon of {host.name} not ready in {timeout:g} s")
                time.sleep(0.05)

    def start_all(self, hosts: list[Host], bootstrap: list[Host]) -> None:
        for host in hosts:
            self.start(host, [b for b in bootstrap if b is not host])
        self.wait_ready(hosts)

    def stop(self, host: Host, timeout: float = _STOP_TIMEOUT) -> int | None:
        """Stop ``host``'s daemon (SIGTERM, then SIGKILL); its exit status."""
        process = host.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    # -- cleaning up -----------------------------------------------------------

    def close(self) -> None:
        """Stop every daemon, then delete every namespace (and so every veth,
        bridge and nftables table in them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            if host.process is not None and host.process.poll() is None:
                host.process.send_signal(signal.SIGTERM)
        for host in self.hosts:
            self.stop(host)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        if os.environ.get("P2PM_KEEP_RIG") is None:
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def rig(root: Path | None = None) -> Iterator[Rig]:
    built = Rig(root)
    try:
        yield built
    finally:
        built.close()
