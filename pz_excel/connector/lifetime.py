"""One ``start()``…``stop()`` lifetime of the client and the connections it makes: the
threads, the wake socket, the dispatch queue, and each live WebSocket with its session."""

from __future__ import annotations

import queue
import socket
import threading
from collections import deque
from typing import Any

import websocket

from pz_excel.connector.framing import MessageAssembler
from pz_excel.protocol.session import Session

#: Put on a lifetime's dispatch queue last: the delivery thread ends there.
END_OF_DISPATCH = object()


class Connection:
    """One live WebSocket and what rides on it: the protocol session (pending requests),
    frames waiting to be sent, and the message being reassembled."""

    def __init__(self, ws: websocket.WebSocket, session: Session):
        self.ws = ws
        self.session = session
        self.outbox: deque[str] = deque()
        self.assembler = MessageAssembler()


class Lifetime:
    """One start()…stop() lifetime: its threads, wake socket and dispatch queue."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.finished = threading.Event()  # the connection thread has said "stopped"
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.conn: Connection | None = None
        self.live_sock: socket.socket | None = None  # for stop() to cut a blocked read
        self.thread: threading.Thread | None = None
        self.dispatcher: threading.Thread | None = None

    def wake(self) -> None:
        try:
            self.wake_w.send(b"\0")
        except OSError:  # buffer full (a wake is pending anyway) or run already over
            pass

    def drain_wake(self) -> None:
        try:
            while self.wake_r.recv(4096):
                pass
        except OSError:
            pass

    def close_wake(self) -> None:
        for s in (self.wake_r, self.wake_w):
            try:
                s.close()
            except OSError:
                pass


def hard_shutdown(sock: socket.socket | None) -> None:
    """Cut a socket under a blocked read, bypassing SSLSocket.shutdown (not thread-safe)."""
    if sock is None:
        return
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass
