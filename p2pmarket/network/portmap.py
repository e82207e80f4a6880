"""UPnP port mapping, in the background.

A home router that speaks UPnP IGD can forward our TCP listen port for us; then
the node is reachable at ``/ip4/<router's external IP>/tcp/<port>`` and needs no
relay. Most routers on carrier-grade NAT cannot help (their "external" address
is itself private), and many have UPnP off, so failure is the normal case: it is
a quiet status, retried with backoff (1 min doubling to 1 h), never an error.

Why not ``libp2p.discovery.upnp.UpnpManager`` as it stands (py-libp2p 0.8.1): it
runs miniupnpc's blocking calls in threads that cannot be abandoned, so a node
stopped during the ~4 s SSDP discovery would wait for it, and
``new_host(enable_upnp=True)`` puts that discovery on the start-up path. The
same miniupnpc calls are made here in threads a stop abandons, from a task
that starts at once. Like py-libp2p, a gateway whose external address is not a
public one (double NAT) is refused: mapping a port on it reaches nobody.

Several nodes behind one router all listen on the default port, and a router
gives an external port to one LAN host only: the second node's request for the
same port is refused (UPnP error 718, ConflictInMappingEntry). It then asks for
any free external port (IGDv2 ``AddAnyPortMapping``; on an IGDv1 router, a few
random ports) and announces the one it got; renewals ask for that port again.

tests/netns/test_netns_upnp.py runs this against miniupnpd, a real UPnP IGD
daemon, on a NAT router in network namespaces; tests/network/test_relaying.py
checks that, with no router answering, start-up is not delayed and the failure
is a quiet status.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import random
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["PortMapper"]

log = logging.getLogger("p2pmarket.network.portmap")

LEASE = 3600  # seconds a mapping lasts unless renewed
RENEW = 1800.0  # renew this often
DESCRIPTION = "p2pmarket"
OTHER_PORTS = 3  # random external ports tried when the router has no AddAnyPortMapping


class _NoGateway(Exception):
    """Why no mapping could be made (the message is the status)."""


def _new_gateway() -> Any:
    import miniupnpc  # type: ignore[import-not-found]  # py-libp2p's UPnP dependency

    return miniupnpc.UPnP()


class PortMapper:
    """Keeps UPnP mappings of our TCP listen ports while a router allows it.

    ``ports()`` gives the TCP ports to map (asked at each attempt, so a port
    chosen by the OS at start-up is seen); ``on_change()`` is called when the
    mapped addresses change.
    """

    def __init__(
        self,
        ports: Callable[[], list[int]],
        on_change: Callable[[], None],
        *,
        first_retry: float = 60.0,
        max_retry: float = 3600.0,
        gateway: Callable[[], Any] = _new_gateway,
    ) -> None:
        self._ports = ports
        self._on_change = on_change
        self._first_retry = first_retry
        self._max_retry = max_retry
        self._new_gateway = gateway
        self.status = "starting"
        self.attempts = 0
        self._addresses: tuple[str, ...] = ()
        self._mapped: dict[int, int] = {}  # our port -> the router's external port

    @property
    def addresses(self) -> tuple[str, ...]:
        """``/ip4/<external IP>/tcp/<port>`` for each mapped port (no peer id)."""
        return self._addresses

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        retry = self._first_retry
        gateway: Any = None
        try:
            while True:
                self.attempts += 1
                try:
                    gateway = gateway or self._new_gateway()
                    external = await self._map(gateway)
                except _NoGateway as why:
                    gateway = None
                    self._set(())
                    self.status = str(why)
                    log.debug("UPnP: %s; next try in %.0f s", why, retry)
                    await trio.sleep(retry)
                    retry = min(retry * 2, self._max_retry)
                    continue
                retry = self._first_retry
                self.status = "mapped"
                addresses = tuple(f"/ip4/{external}/tcp/{p}" for p in self._mapped.values())
                if addresses != self._addresses:
                    log.info("UPnP: mapped %s", ", ".join(addresses))
                self._set(addresses)
                await trio.sleep(RENEW)
        finally:
            self._set(())
            if gateway is not None and self._mapped:
                with trio.CancelScope(shield=True), trio.move_on_after(2):
                    await self._unmap(gateway)

    def _set(self, addresses: tuple[str, ...]) -> None:
        if addresses != self._addresses:
            self._addresses = addresses
            self._on_change()

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        # a stop abandons the thread rather than waiting for the router
        call: Callable[[], Any] = functools.partial(fn, *args)
        # (mypy 2.4 does not match keywords after a TypeVarTuple *args: a false alarm)
        return await trio.to_thread.run_sync(call, abandon_on_cancel=True)  # type: ignore[call-arg]

    async def _map(self, gateway: Any) -> str:
        """Discover the router (if not known yet) and map every port; the
        external IP address."""
        if not gateway.lanaddr or not self._mapped:
            try:
                found = await self._call(gateway.discover)
            except Exception as exc:
                # miniupnpc may raise an exception saying "Success" on success
                if str(exc) != "Success":
                    raise _NoGateway("no UPnP router answered") from None
                found = 1
            if not found:
                raise _NoGateway("no UPnP router answered")
            try:
                await self._call(gateway.selectigd)
            except Exception:
                raise _NoGateway("no UPnP internet gateway among the devices found") from None
        try:
            external = str(await self._call(gateway.externalipaddress))
            ip = ipaddress.ip_address(external)
        except Exception:
            raise _NoGateway("the UPnP router gave no external address") from None
        if not ip.is_global:
            raise _NoGateway(f"the UPnP router's external address {ip} is not public (double NAT)")
        ports = sorted(set(self._ports()))
        if not ports:
            raise _NoGateway("no TCP port to map")
        mapped: dict[int, int] = {}
        for port in ports:
            got = await self._map_port(gateway, port)
            if got is not None:
                mapped[port] = got
        if not mapped:
            raise _NoGateway("the UPnP router refused to map our port")
        self._mapped = mapped
        return str(ip)

    async def _map_port(self, gateway: Any, port: int) -> int | None:
        """Map ``port``: at the external port we hold already, else the same
        number, else any the router picks (another LAN host may hold ours);
        the external port, or None if refused."""
        lan = gateway.lanaddr
        wanted = [self._mapped.get(port, port)]
        if wanted[0] != port:
            wanted.append(port)
        for external in wanted:
            try:
                await self._call(
                    gateway.addportmapping, external, "TCP", lan, port, DESCRIPTION, "", LEASE
                )
                return external
            except Exception as exc:
                log.debug("UPnP: mapping %d to our %d refused: %s", external, port, exc)
        try:
            got = await self._call(
                gateway.addanyportmapping, port, "TCP", lan, port, DESCRIPTION, "", LEASE
            )
            if isinstance(got, int) and 0 < got < 65536:
                return got
        except Exception as exc:  # an IGDv1 router has no AddAnyPortMapping
            log.debug("UPnP: any port for our %d refused: %s", port, exc)
        for _ in range(OTHER_PORTS):
            external = random.randint(1024, 65535)
            try:
                await self._call(
                    gateway.addportmapping, external, "TCP", lan, port, DESCRIPTION, "", LEASE
                )
                return external
            except Exception as exc:
                log.debug("UPnP: mapping %d to our %d refused: %s", external, port, exc)
        return None

    async def _unmap(self, gateway: Any) -> None:
        for external in self._mapped.values():
            try:
                await self._call(gateway.deleteportmapping, external, "TCP")
            except Exception as exc:
                log.debug("UPnP: removing the mapping of %d failed: %s", external, exc)
        self._mapped = {}
