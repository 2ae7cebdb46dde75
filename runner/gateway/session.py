"""One client connection of the fake gateway, and the loopback rule for where it listens."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

from runner.gateway import wire


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Session:
    """One client connection: its socket, its clientId once startApi has come.

    During an outage (`held` is a list) everything sent to it is held, in order,
    until the outage ends; if the socket closes first, the held messages go with it.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_sent: Callable[[int | None, list[str]], None] | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.client_id: int | None = None
        self.held: list[list[str]] | None = None
        self.outage_token = 0
        self._on_sent = on_sent

    def send(self, fields: list[str]) -> None:
        if self.held is not None:
            self.held.append(fields)
            return
        self.write(fields)

    def write(self, fields: list[str]) -> None:
        """Write now, outage or not."""
        if not self.writer.is_closing():
            self.writer.write(wire.frame(fields))
            if self._on_sent is not None:
                self._on_sent(self.client_id, fields)

    def close(self) -> None:
        # close(), not abort(): what was written (an ack, a 326) still goes out first.
        if not self.writer.is_closing():
            self.writer.close()
