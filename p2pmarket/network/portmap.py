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

No router answers on the machines the tests run on; the tests check only that
start-up is not delayed and that the failure is a status.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import trio

__all__ = ["PortMapper"]

log = logging.getLogger("p2pmarket.network.portmap")

LEASE = 3600  # seconds a mapping lasts unless renewed
RENEW = 1800.0  # renew this often
DESCRIPTION = "p2pmarket"


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
        self._mapped: list[int] = []

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
                self._set(tuple(f"/ip4/{external}/tcp/{p}" for p in self._mapped))
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
        mapped: list[int] = []
        for port in ports:
            try:
                await self._call(
                    gateway.addportmapping,
                    port,
                    "TCP",
                    gateway.lanaddr,
                    port,
                    DESCRIPTION,
                    "",
                    LEASE,
                )
                mapped.append(port)
            except Exception as exc:
                log.debug("UPnP: mapping port %d refused: %s", port, exc)
        if not mapped:
            raise _NoGateway("the UPnP router refused to map our port")
        self._mapped = mapped
        return external

    async def _unmap(self, gateway: Any) -> None:
        for port in self._mapped:
            try:
                await self._call(gateway.deleteportmapping, port, "TCP")
            except Exception as exc:
                log.debug("UPnP: removing the mapping of %d failed: %s", port, exc)
        self._mapped = []
