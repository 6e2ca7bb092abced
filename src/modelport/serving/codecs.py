"""Wire formats <-> columns (dict of name -> numpy array, first dimension = rows). Decoding goes straight to arrays:
no DataFrame, no pydantic, no per-row objects on the way in."""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa  # imported with the API, never on the event loop at a first Arrow request (about 1 s)
import pyarrow.ipc  # noqa: F401

from modelport.domain.errors import InvalidInput
from modelport.serving.runtimes import Columns

_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# What hostile or malformed bytes make Python, orjson, numpy or Arrow raise while a request is decoded: numbers out
# of a type's range, nesting past the recursion limit, bad text, shapes that do not fit, allocations too large.
DECODE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, IndexError, KeyError, UnicodeError, EOFError,
                 MemoryError)
F = TypeVar("F", bound=Callable[..., Any])


def decoder(function: F) -> F:
    """Mark a request decoder: whatever the bytes make it raise is the request's fault, so it becomes InvalidInput
    (a 4xx in the face's format), never a 500. Every face decodes request bodies through functions marked so."""

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DECODE_ERRORS as exc:
            raise InvalidInput(f"the request body cannot be decoded: {type(exc).__name__}: {exc}") from None

    return guarded  # type: ignore[return-value]


def _column(name: str, values: list[Any]) -> np.ndarray:
    try:
        array = np.asarray(values)
    except ValueError:
        raise InvalidInput(f"column {name!r} has rows of different shapes", field=name) from None
    if array.dtype == object:
        if any(isinstance(v, (list, dict)) for v in values):
            raise InvalidInput(f"column {name!r} has rows of different shapes or types", field=name)
    elif array.dtype.kind == "U":
        array = array.astype(object)
    elif array.dtype.kind not in "biuf":
        raise InvalidInput(f"column {name!r} has values of an unsupported type", field=name)
    return array


@decoder
def columns_from_records(records: Any) -> tuple[Columns, int]:
    """pandas `orient="records"`: [{"col": value-or-tensor, ...}, ...]."""
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list):
        raise InvalidInput("the body must be a JSON array of records (pandas orient='records')")
    if not records:
        return {}, 0  # zero rows in, zero rows out
    first = records[0]
    if not isinstance(first, dict) or not first:
        raise InvalidInput("each record must be a non-empty JSON object")
    names = list(first)
    columns: Columns = {}
    for name in names:
        try:
            values = [r[name] for r in records]
        except (KeyError, TypeError):
            raise InvalidInput(f"column {name!r} is missing from some records", field=name) from None
        columns[name] = _column(name, values)
    if any(len(r) != len(names) for r in records):
        raise InvalidInput("records do not all have the same columns")
    return columns, len(records)


@decoder
def columns_from_dict(data: Any) -> tuple[Columns, int]:
    """Columnar JSON {"col": [row, row, ...]} (pandas orient='list'); {"tensor": [...]} is Wallaroo's legacy shape."""
    if isinstance(data, list):
        return columns_from_records(data)
    if not isinstance(data, dict) or not data:
        raise InvalidInput("the body must be a JSON object of columns or an array of records")
    columns = {name: _column(name, values if isinstance(values, list) else [values]) for name, values in data.items()}
    lengths = {len(c) for c in columns.values()}
    if len(lengths) != 1:
        raise InvalidInput("columns have different numbers of rows")
    return columns, lengths.pop()


# -- Wallaroo records out ---------------------------------------------------------------------------------------------

@dataclass
class DatasetFilter:
    """Wallaroo's `dataset[]`, `dataset.exclude[]` and `dataset.separator` query parameters."""

    include: list[str] = field(default_factory=lambda: ["*"])
    exclude: list[str] = field(default_factory=list)
    separator: str = "."

    @classmethod
    def from_query(cls, query: Any) -> DatasetFilter:
        include = query.getlist("dataset[]") or query.getlist("dataset") or ["*"]
        exclude = query.getlist("dataset.exclude[]") or query.getlist("dataset.exclude")
        separator = query.get("dataset.separator") or "."
        return cls(include, exclude, separator)

    def keeps(self, path: str) -> bool:
        """`path` like "out.dense_1" (with the separator); a parent entry keeps or drops all its children."""
        def matches(rule: str) -> bool:
            return rule == "*" or path == rule or path.startswith(rule + self.separator) or rule.startswith(path + self.separator)

        return any(matches(r) for r in self.include) and not any(
            path == r or path.startswith(r + self.separator) for r in self.exclude)

    @property
    def everything(self) -> bool:
        return self.include == ["*"] and not self.exclude


EVERYTHING = DatasetFilter()


@dataclass
class Answer:
    inputs: Columns
    outputs: Columns
    rows: int
    time_ms: int
    metadata: dict[str, Any]


def _row(array: np.ndarray, i: int) -> Any:
    """Row i as orjson can write it: numeric arrays and numpy scalars natively, object values as Python values."""
    value = array[i]
    if isinstance(value, np.ndarray) and value.dtype == object:
        return value.tolist()
    return value


def records_json(answer: Answer, dataset: DatasetFilter) -> bytes:
    if dataset.everything:  # the common case: no per-key filtering
        meta = answer.metadata
        ins, outs = answer.inputs, answer.outputs
        return orjson.dumps([{"time": answer.time_ms, "in": {k: _row(v, i) for k, v in ins.items()},
                              "out": {k: _row(v, i) for k, v in outs.items()}, "check_failures": [], "metadata": meta}
                             for i in range(answer.rows)], option=_JSON_OPTIONS)
    sep = dataset.separator
    ins = {k: v for k, v in answer.inputs.items() if dataset.keeps(f"in{sep}{k}")}
    outs = {k: v for k, v in answer.outputs.items() if dataset.keeps(f"out{sep}{k}")}
    keep = {key: dataset.keeps(key) for key in ("time", "in", "out", "check_failures", "metadata")}
    metadata = {k: v for k, v in answer.metadata.items() if dataset.keeps(f"metadata{sep}{k}")}
    records = []
    for i in range(answer.rows):
        record: dict[str, Any] = {}
        if keep["time"]:
            record["time"] = answer.time_ms
        if keep["in"]:
            record["in"] = {k: _row(v, i) for k, v in ins.items()}
        if keep["out"]:
            record["out"] = {k: _row(v, i) for k, v in outs.items()}
        if keep["check_failures"]:
            record["check_failures"] = []
        if keep["metadata"]:
            record["metadata"] = metadata
        records.append(record)
    return orjson.dumps(records, option=_JSON_OPTIONS)


# -- Arrow ------------------------------------------------------------------------------------------------------------

@decoder
def columns_from_arrow(body: bytes) -> tuple[Columns, int]:
    try:
        try:
            table = pa.ipc.open_file(pa.BufferReader(body)).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_stream(pa.BufferReader(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"the body is not an Arrow IPC file: {exc}") from None
    if table.num_columns == 0:
        raise InvalidInput("the Arrow table has no columns")
    columns: Columns = {}
    for name, chunked in zip(table.column_names, table.columns):
        key = name[3:] if name.startswith("in.") else name
        columns[key] = _arrow_to_numpy(key, chunked.combine_chunks() if chunked.num_chunks != 1 else chunked.chunk(0))
    return columns, table.num_rows


def _arrow_to_numpy(name: str, array: Any) -> np.ndarray:
    if array.null_count:
        raise InvalidInput(f"column {name!r} has null values", field=name)
    kind = array.type
    if pa.types.is_fixed_size_list(kind):
        inner = _arrow_to_numpy(name, array.flatten())
        return inner.reshape(len(array), kind.list_size, *inner.shape[1:])
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        lengths = np.diff(array.offsets.to_numpy())
        if len(lengths) and (lengths != lengths[0]).any():
            raise InvalidInput(f"column {name!r} has rows of different lengths", field=name)
        inner = _arrow_to_numpy(name, array.flatten())
        return inner.reshape(len(array), int(lengths[0]) if len(lengths) else 0, *inner.shape[1:])
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return np.asarray(array.to_pylist(), dtype=object)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return array.to_numpy(zero_copy_only=False)
    raise InvalidInput(f"column {name!r} has the unsupported Arrow type {kind}", field=name)


def _numpy_to_arrow(array: np.ndarray) -> Any:
    if array.dtype == object:
        return pa.array(array.tolist())
    if array.ndim == 1:
        return pa.array(array)
    inner = _numpy_to_arrow(np.ascontiguousarray(array).reshape(array.shape[0] * array.shape[1], *array.shape[2:]))
    if array.shape[1] == 0:  # Arrow has no fixed-size lists of size 0: empty variable-size lists instead
        return pa.ListArray.from_arrays(pa.array(np.zeros(array.shape[0] + 1, dtype=np.int32)), inner)
    return pa.FixedSizeListArray.from_arrays(inner, array.shape[1])


def _repeated_string(value: str, n: int) -> Any:
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def _repeated_list(values: list[Any], n: int, kind: Any) -> Any:
    width = len(values)
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * width)
    if kind == pa.string():
        items = pa.array(values * n if width else [], type=kind)
    else:
        items = pa.array(np.tile(np.asarray(values, dtype=np.int64), n) if width else np.zeros(0, np.int64), type=kind)
    return pa.ListArray.from_arrays(offsets, items)


def arrow_file(answer: Answer, dataset: DatasetFilter) -> bytes:
    sep = dataset.separator
    n = answer.rows
    names: list[str] = []
    arrays: list[Any] = []

    def add(name: str, array: Any) -> None:
        if dataset.keeps(name):
            names.append(name)
            arrays.append(array)

    add("time", pa.array(np.full(n, answer.time_ms, dtype="datetime64[ms]")))
    for k, v in answer.inputs.items():
        add(f"in{sep}{k}", _numpy_to_arrow(v))
    for k, v in answer.outputs.items():
        add(f"out{sep}{k}", _numpy_to_arrow(v))
    # Per-request constants repeated on every row: built from offset and value buffers, not from n Python objects.
    add("check_failures", _repeated_list([], n, pa.int64()))
    for k, v in answer.metadata.items():
        if isinstance(v, list):
            add(f"metadata{sep}{k}", _repeated_list(v, n, pa.int64() if k == "elapsed" else pa.string()))
        else:
            add(f"metadata{sep}{k}", _repeated_string(str(v), n))
    table = pa.Table.from_arrays(arrays, names=names)
    sink = io.BytesIO()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# -- Open Inference Protocol (V2) ------------------------------------------------------------------------------------

V2_TYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64, "BYTES": object,
}
_V2_NAMES = {np.dtype(t).str: name for name, t in V2_TYPES.items() if t is not object}


@dataclass(slots=True)
class V2Request:
    columns: Columns
    rows: int
    id: str | None
    parameters: dict[str, Any] | None
    outputs: list[str] | None
    binary_outputs: set[str] | bool = False  # names, or True for all (binary data extension)


def _bytes_elements(raw: bytes, count: int, name: str) -> np.ndarray:
    """BYTES tensors in binary form: each element is a little-endian u32 length, then the bytes."""
    values, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset:offset + 4], "little")
        values.append(raw[offset + 4:offset + 4 + size].decode("utf-8", errors="replace"))
        offset += 4 + size
    if len(values) != count:
        raise InvalidInput(f"input {name!r}: binary data holds {len(values)} elements, shape needs {count}", field=name)
    array = np.empty(count, dtype=object)
    array[:] = values
    return array


@decoder
def v2_request(body: bytes, header_length: int | None = None) -> V2Request:
    """JSON, or the binary data extension: `Inference-Header-Content-Length` bytes of JSON, then raw tensors.

    On the hot path: exact type checks and plain loops (no generator expressions) keep a one-row request's decoding
    to a few microseconds, most of it numpy building the array."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise InvalidInput("Inference-Header-Content-Length does not fit the body")
    head, binary = (body[:header_length], body[header_length:]) if header_length is not None else (body, b"")
    try:
        data = orjson.loads(head)
    except orjson.JSONDecodeError:
        raise InvalidInput("the body is not valid JSON") from None
    inputs = data.get("inputs") if type(data) is dict else None
    if type(inputs) is not list or not inputs:
        raise InvalidInput("inputs is required: a non-empty list of tensors", field="inputs")
    columns: Columns = {}
    rows = None
    offset = 0
    for i, tensor in enumerate(inputs):
        if type(tensor) is not dict:
            raise InvalidInput(f"inputs[{i}] must be an object", field=f"inputs[{i}]")
        name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
        if type(name) is not str or not name:
            raise InvalidInput(f"inputs[{i}].name is required", field=f"inputs[{i}].name")
        if type(shape) is not list or not shape:
            raise InvalidInput(f"input {name!r}: shape must be a non-empty list of non-negative integers", field=name)
        for d in shape:
            if type(d) is not int or d < 0:
                raise InvalidInput(f"input {name!r}: shape must be a non-empty list of non-negative integers",
                                   field=name)
        dtype = V2_TYPES.get(datatype) if type(datatype) is str else None
        if dtype is None:
            raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not one of {', '.join(V2_TYPES)}", field=name)
        parameters = tensor.get("parameters")
        size = _parameter(parameters, "binary_data_size", name)
        try:
            if size is not None:
                if type(size) is not int or size < 0 or offset + size > len(binary):
                    raise InvalidInput(f"input {name!r}: binary_data_size runs past the body", field=name)
                raw = binary[offset:offset + size]
                offset += size
                if datatype == "BYTES":
                    array = _bytes_elements(raw, math.prod(shape), name).reshape(shape)
                else:
                    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
            elif "data" in tensor:
                array = np.asarray(tensor["data"], dtype=dtype).reshape(shape)
            else:
                raise InvalidInput(f"input {name!r}: data is required", field=name)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput(f"input {name!r}: data does not fit shape {shape} and datatype {datatype}: {exc}",
                               field=name) from None
        if rows is not None and shape[0] != rows:
            raise InvalidInput(f"input {name!r} has {shape[0]} rows, the others {rows}", field=name)
        rows = shape[0]
        columns[name] = array
    parameters = data.get("parameters")
    binary_out: set[str] | bool = bool(_parameter(parameters, "binary_data_output", "parameters"))
    outputs = data.get("outputs")
    wanted = None
    if outputs is not None:
        if type(outputs) is not list:
            raise InvalidInput("outputs must be a list of {\"name\": ...} objects", field="outputs")
        wanted, named = [], set()
        for i, o in enumerate(outputs):
            if type(o) is not dict or type(o.get("name")) is not str:
                raise InvalidInput(f"outputs[{i}] must be an object with a name", field=f"outputs[{i}]")
            wanted.append(o["name"])
            if _parameter(o.get("parameters"), "binary_data", o["name"]):
                named.add(o["name"])
        binary_out = named or binary_out
    request_id = data.get("id")
    if request_id is not None and type(request_id) is not str:
        raise InvalidInput("id must be a string", field="id")
    return V2Request(columns, rows or 0, request_id, parameters, wanted, binary_out)


def _parameter(parameters: Any, key: str, where: str) -> Any:
    """A value from a `parameters` object, which must be an object when present."""
    if parameters is None:
        return None
    if type(parameters) is not dict:
        raise InvalidInput(f"{where}: parameters must be an object", field=where)
    return parameters.get(key)


def v2_datatype(array: np.ndarray) -> str:
    return "BYTES" if array.dtype == object or array.dtype.kind in "US" else _V2_NAMES.get(array.dtype.str, "FP64")


def v2_response(model: str, version: str | None, request: V2Request, outputs: Columns) -> tuple[bytes, int | None]:
    """The body, and the JSON header's length when tensors follow it in binary form (else None)."""
    tensors = []
    chunks: list[bytes] = []
    for name, array in outputs.items():
        if request.outputs and name not in request.outputs:
            continue
        datatype = v2_datatype(array)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = request.binary_outputs is True or (isinstance(request.binary_outputs, set) and name in request.binary_outputs)
        if binary:
            if datatype == "BYTES":
                raw = b"".join(len(b := str(v).encode()).to_bytes(4, "little") + b for v in array.ravel().tolist())
            else:
                raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif datatype == "BYTES":
            tensor["data"] = [str(v) for v in array.ravel().tolist()]
        else:
            tensor["data"] = np.ascontiguousarray(array).ravel()
        tensors.append(tensor)
    reply: dict[str, Any] = {"model_name": model, "outputs": tensors}
    if version:
        reply["model_version"] = version
    if request.id is not None:
        reply["id"] = request.id
    head = orjson.dumps(reply, option=_JSON_OPTIONS)
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


# -- validation against the loaded models -----------------------------------------------------------------------------

def check_inputs(columns: Columns, signature: dict[str, Any] | None, rows: int | None = None) -> None:
    """Refuse, naming the column, inputs the first step cannot take: missing names, wrong widths, non-numbers.
    With zero rows only the names are checked: an empty JSON column has no row shape or type to check."""
    if not signature or not signature.get("inputs"):
        return
    inputs = signature["inputs"]
    if rows == 0:
        if columns and not (len(inputs) == 1 and inputs[0]["name"] == "inputs"):
            for spec in inputs:
                if spec["name"] not in columns:
                    raise InvalidInput(f"input column {spec['name']!r} is missing", field=spec["name"])
        return
    if len(inputs) == 1 and inputs[0]["name"] == "inputs":  # an unnamed feature matrix (sklearn, xgboost)
        width = inputs[0]["shape"][-1] if len(inputs[0]["shape"]) > 1 else -1
        if len(columns) == 1:
            (name, array), = columns.items()
            got = array.shape[1] if array.ndim == 2 else (1 if array.ndim == 1 else None)
            if got is None or (width != -1 and got != width):
                raise InvalidInput(f"column {name!r} must hold rows of {width} features, got shape "
                                   f"{list(array.shape[1:])}", field=name)
        elif width != -1 and len(columns) != width:
            raise InvalidInput(f"the model takes {width} feature columns, got {len(columns)}")
        _numeric(columns)
        return
    for spec in inputs:
        name = spec["name"]
        if name not in columns:
            raise InvalidInput(f"input column {name!r} is missing", field=name)
        array = columns[name]
        want = spec.get("shape") or []
        got = list(array.shape)
        if len(want) == len(got) and any(w not in (-1, g) for w, g in zip(want[1:], got[1:])):
            raise InvalidInput(f"column {name!r} has shape {got[1:]} per batch, the model takes {want[1:]}", field=name)
        if len(want) and len(want) != len(got) and not (len(want) == 1 and len(got) == 1):
            raise InvalidInput(f"column {name!r} has {len(got) - 1} dimensions per row, the model takes "
                               f"{len(want) - 1}", field=name)
        if spec.get("datatype") != "BYTES" and array.dtype == object:
            raise InvalidInput(f"column {name!r} must be numeric", field=name)


def _numeric(columns: Columns) -> None:
    for name, array in columns.items():
        if array.dtype == object:
            raise InvalidInput(f"column {name!r} must be numeric", field=name)
