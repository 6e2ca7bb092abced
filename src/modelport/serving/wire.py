"""The replica wire format: one frame per batch, a small JSON header followed by the raw column buffers.

    frame  = u32 header length | header (JSON) | buffer 0 | buffer 1 | ...
    header = {"op": ..., "columns": [{"name", "dtype", "shape", "nbytes"} | {"name", "values"}], ...}

Numeric columns travel as their bytes (no pickle, no per-element encoding); object columns (strings) as JSON values.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

_LENGTH = struct.Struct("!I")
Columns = dict[str, np.ndarray]


def encode(header: dict[str, Any], columns: Columns | None = None) -> list[bytes | memoryview]:
    """The frame as a list of chunks, for `writelines`/`sendmsg` without joining large buffers."""
    described = []
    buffers: list[bytes | memoryview] = []
    for name, array in (columns or {}).items():
        if array.dtype.kind in "biufc":
            array = np.ascontiguousarray(array)
            described.append({"name": name, "dtype": array.dtype.str, "shape": array.shape, "nbytes": array.nbytes})
            # a zero-size array has no bytes (and memoryview refuses to cast a shape with a zero in it)
            buffers.append(memoryview(array).cast("B") if array.size else b"")
        else:
            described.append({"name": name, "values": array.tolist(), "shape": array.shape})
    head = orjson.dumps({**header, "columns": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    return [_LENGTH.pack(len(head)), head, *buffers]


def header_length(prefix: bytes) -> int:
    return _LENGTH.unpack(prefix)[0]


def body_length(header: dict[str, Any]) -> int:
    return sum(c.get("nbytes", 0) for c in header.get("columns", ()))


def decode_columns(header: dict[str, Any], body: bytes | memoryview) -> Columns:
    columns: Columns = {}
    offset = 0
    for c in header.get("columns", ()):
        if "nbytes" in c:
            n = c["nbytes"]
            array = np.frombuffer(body, dtype=np.dtype(c["dtype"]), count=n // np.dtype(c["dtype"]).itemsize,
                                  offset=offset)
            columns[c["name"]] = array.reshape(c["shape"])
            offset += n
        else:
            values = np.empty(len(c["values"]), dtype=object)
            values[:] = c["values"]
            columns[c["name"]] = values
    return columns


def read_frame_blocking(sock: Any) -> tuple[dict[str, Any], Columns]:
    """Read one frame from a blocking socket (the replica side)."""
    header = orjson.loads(_recv_exactly(sock, header_length(_recv_exactly(sock, 4))))
    body = _recv_exactly(sock, body_length(header))
    return header, decode_columns(header, body)


def _recv_exactly(sock: Any, n: int) -> bytes:
    buffer = bytearray(n)
    view = memoryview(buffer)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("peer closed the connection")
        got += k
    return bytes(buffer)
