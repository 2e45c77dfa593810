"""Byte-level helpers of rdpipe's pure-Python headers (the `.bin` container, SVD strings):
unsigned LEB128 varints and a bounds-checked reader whose every failure is one exception type
with a message naming the field, so a corrupt or truncated input is a clear error, never an
IndexError or a hang."""
from __future__ import annotations


def varint(value: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, low bits first, high bit on all but the last."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class ByteReader:
    """Reads `data` front to back; raises `error(message)` on truncation or bad fields.

    label names the format in messages ("rdpipe file", "SVD string")."""

    def __init__(self, data: bytes, error: type[Exception], label: str):
        self.data, self.at, self.error, self.label = data, 0, error, label

    def take(self, count: int, field: str) -> bytes:
        if self.at + count > len(self.data):
            raise self.error(f"truncated {self.label}: ends inside the {field} "
                             f"(byte {len(self.data)} of at least {self.at + count})")
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def varint(self, field: str, limit: int) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.byte(field)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if value > limit:
                    raise self.error(f"corrupt {self.label}: {field} {value} exceeds {limit}")
                return value
        raise self.error(f"corrupt {self.label}: over-long varint in the {field}")

    @property
    def rest(self) -> bytes:
        return self.data[self.at:]
