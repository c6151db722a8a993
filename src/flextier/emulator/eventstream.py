"""AWS event-stream binary framing (``application/vnd.amazon.eventstream``).

Frame = prelude (total length, headers length: big-endian uint32; CRC32 of those
8 bytes) + headers + payload + CRC32 of everything before it. Headers are
``name_len:u8 name type:u8 value``; only string headers (type 7, ``u16`` length)
are needed here. Matches what ``botocore.eventstream`` decodes.
"""
from __future__ import annotations

import struct
from binascii import crc32
from typing import Mapping

__all__ = ["encode_frame", "event_frame", "exception_frame"]


def _headers(headers: Mapping[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        n = name.encode("utf-8")
        v = value.encode("utf-8")
        out += struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v
    return bytes(out)


def encode_frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    h = _headers(headers)
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack("!II", total, len(h))
    prelude += struct.pack("!I", crc32(prelude) & 0xFFFFFFFF)
    msg = prelude + h + payload
    return msg + struct.pack("!I", crc32(msg) & 0xFFFFFFFF)


def event_frame(event_type: str, payload: bytes) -> bytes:
    return encode_frame({":event-type": event_type, ":content-type": "application/json",
                         ":message-type": "event"}, payload)


def exception_frame(exception_type: str, payload: bytes) -> bytes:
    return encode_frame({":exception-type": exception_type, ":content-type": "application/json",
                         ":message-type": "exception"}, payload)
