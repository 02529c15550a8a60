"""WebSocket frames off the socket: size limits, reassembly of fragments, non-blocking
reads. Below the protocol: what a frame *says* is :mod:`pz_excel.protocol`'s business."""

from __future__ import annotations

import ssl
import struct

import websocket
from websocket import ABNF

from pz_excel.protocol.frames import MAX_FRAME_BYTES

#: A message (one frame, or its fragments together) beyond this is a broken peer: the
#: connection is dropped before the payload is read, not grown in memory without bound.
#: Up to it a message is read whole; over ``MAX_FRAME_BYTES`` (16 MiB) it reaches the
#: caller as a ``DecodeError`` that keeps the raw frame.
MAX_MESSAGE_BYTES = 2 * MAX_FRAME_BYTES


class MessageAssembler:
    """Data frames in, whole messages out: fragments are joined, up to ``limit`` bytes."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES):
        self.limit = limit
        self.fragments: list[bytes] | None = None
        self.fragments_size = 0

    def feed(self, frame: ABNF) -> bytes | None:
        """A data frame in; a whole message out once its last fragment is in."""
        op, data = frame.opcode, bytes(frame.data)
        if op in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY):
            if self.fragments is not None:
                raise websocket.WebSocketProtocolException("new message inside a fragmented one")
            if frame.fin:
                return data
            self.fragments, self.fragments_size = [data], len(data)
            return None
        if op != ABNF.OPCODE_CONT or self.fragments is None:
            raise websocket.WebSocketProtocolException(f"unexpected frame (opcode {op})")
        self.fragments.append(data)
        self.fragments_size += len(data)
        if self.fragments_size > self.limit:
            raise websocket.WebSocketProtocolException(
                f"fragmented message over the {self.limit}-byte limit"
            )
        if not frame.fin:
            return None
        message, self.fragments = b"".join(self.fragments), None
        return message


def limit_frame_size(ws: websocket.WebSocket, limit: int = MAX_MESSAGE_BYTES) -> None:
    """Refuse a frame whose header announces more than ``limit`` bytes before its payload
    is read. websocket-client itself reads any announced length (up to 2**63) into memory;
    its frame buffer reads the payload through ``recv`` once ``length`` is known."""
    buffer = getattr(ws, "frame_buffer", None)
    recv = getattr(buffer, "recv", None)
    if buffer is None or recv is None or not hasattr(buffer, "length"):
        return  # another websocket-client layout: the fragment limit still holds

    def guarded(bufsize: int) -> bytes:
        length = buffer.length
        if length is not None and length > limit:
            raise websocket.WebSocketProtocolException(
                f"a frame of {length} bytes is over the {limit}-byte limit"
            )
        return recv(bufsize)

    buffer.recv = guarded


def read_frame(ws: websocket.WebSocket, timeout: float) -> ABNF | None:
    """One frame if it is all there. Non-blocking, so a frame that stops half-way (or a
    TLS record with no data) can't hold up queued requests; websocket-client's frame
    buffer keeps the part read and resumes on the next call. ``timeout`` is put back
    after (sends block at most that long)."""
    ws.settimeout(0)
    try:
        return ws.recv_frame()
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    finally:
        ws.settimeout(timeout)


def sendable_close_code(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 §7.4: never 1004-1006, 1015,
    nor the unassigned 1016-2999)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def echo_close(ws: websocket.WebSocket, payload: bytes) -> None:
    """Answer the peer's close frame with the status code it sent (RFC 6455 §5.5.1: "the
    endpoint typically echos the status code it received"): a 4009 is answered 4009, not
    1000. A close without a code (or with one no frame may carry) gets an empty one."""
    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
    if code is not None and sendable_close_code(code):
        ws.send_close(status=code)
    else:
        ws.send(b"", ABNF.OPCODE_CLOSE)
