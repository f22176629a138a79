"""Link and address state (pyroute2 RTNL): interfaces and the support tunnel going up or
down, and the appliance's own addresses.

`link_event` is pure (a pyroute2 RTM_NEWLINK/RTM_DELLINK message -> `LinkEvent`); `LinkWatch`
subscribes to the link and address groups, first reports every interface's current state
(so a tunnel that is already down at start is seen), then each change. Addresses are not
events for the detectors: they tell the site view which addresses are the appliance's.
Link messages are few (a state change, not a packet), so pyroute2's decoding costs nothing
that matters here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from gateway.netns import socket_in_netns
from gateway.watch.detectors.base import LinkEvent

log = logging.getLogger(__name__)
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
NETLINK_ROUTE = 0


def link_event(message: Any, ts: float) -> LinkEvent | None:
    """A link message as a `LinkEvent` (up = administratively up with carrier); None for
    other messages or a message without a name."""
    kind = message.get("event")
    if kind not in ("RTM_NEWLINK", "RTM_DELLINK"):
        return None
    name = message.get_attr("IFLA_IFNAME")
    if not name:
        return None
    flags = int(message.get("flags") or 0)
    up = kind == "RTM_NEWLINK" and bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP)
    info = message.get_attr("IFLA_LINKINFO")
    link_kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return LinkEvent(ts=ts, interface=str(name), up=up, kind=link_kind)


def _route_socket(netns: str | None) -> Any:
    from pyroute2 import AsyncIPRoute

    if netns is None:
        return AsyncIPRoute()
    sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    return AsyncIPRoute(use_socket=sock)


async def local_addresses(netns: str | None = None) -> list[str]:
    """Every address of every interface (the appliance's own)."""
    ipr = _route_socket(netns)
    try:
        return [
            str(a.get_attr("IFA_ADDRESS"))
            async for a in await ipr.get_addr()
            if a.get_attr("IFA_ADDRESS")
        ]
    finally:
        ipr.close()


class LinkWatch:
    """Reports link states to `emit` and address changes to `on_addresses`."""

    def __init__(
        self,
        emit: Callable[[LinkEvent], None],
        on_addresses: Callable[[list[str]], None],
        clock: Callable[[], float],
        netns: str | None = None,
    ) -> None:
        self.emit = emit
        self.on_addresses = on_addresses
        self.clock = clock
        self.netns = netns

    async def run(self, stop: asyncio.Event) -> None:
        events = _route_socket(self.netns)
        try:
            await events.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
            await self._initial()
            reader = asyncio.create_task(self._read(events))
            try:
                await stop.wait()
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            events.close()

    async def _initial(self) -> None:
        ipr = _route_socket(self.netns)
        try:
            async for message in await ipr.get_links():
                message["event"] = "RTM_NEWLINK"
                event = link_event(message, self.clock())
                if event is not None:
                    self.emit(event)
        finally:
            ipr.close()
        self.on_addresses(await local_addresses(self.netns))

    async def _read(self, events: Any) -> None:
        async for message in events.get():
            kind = message.get("event")
            if kind in ("RTM_NEWADDR", "RTM_DELADDR"):
                self.on_addresses(await local_addresses(self.netns))
                continue
            event = link_event(message, self.clock())
            if event is not None:
                self.emit(event)
