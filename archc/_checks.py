"""Checks of what archc reads from disk and from numeric options, before it is used: one
function per kind of check, each failing with an ArchError that names the file (or flag), the
field and what was expected (CLI exit 2).

    regular_file   the path is a regular file (stat before open: a FIFO or device is never
                   opened, so nothing blocks), of at most `limit` bytes
    read_bytes     its bytes, never more than `limit`
    decode_text    bytes as UTF-8 text, an invalid byte named by line and column
    read_json      strict JSON (no NaN/Infinity) of an expected top-level type
    field          one field of a JSON object, of an expected type
    finite         a number option or field is finite and within a documented range
    count          a count that an option implies, bounded before anything is allocated
    tensors        a safetensors file: header, dtypes, shapes and offsets checked before
                   loading, then every floating tensor finite (finite_tensors: named if not)
    available_memory  bytes a new allocation may take (for estimates before allocating)
    address        HOST:PORT of a network peer, parsed and validated
    run_json       run.json of an `archc train` run folder: the fields others read, typed
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import stat
import struct

from archc.compiler import ArchError

MAX_JSON_BYTES = 16 << 20          # run.json, summary.json, step.json, compress.json ...
MAX_HEADER_BYTES = 100 << 20       # a safetensors header (safetensors' own limit)
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                      "U8": 1, "BOOL": 1}
_TYPES = {dict: "a JSON object", list: "a JSON list", str: "a string", int: "an integer",
          float: "a number", bool: "true or false"}


def regular_file(path, what: str | None = None, limit: int | None = None) -> os.stat_result:
    """os.stat of `path` if it is a regular file of at most `limit` bytes; an error naming
    it (as `what`, default the path) otherwise. Nothing is opened."""
    shown = what or os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ArchError(f"cannot read {shown}: no such file") from None
    except OSError as err:
        raise ArchError(f"cannot read {shown}: {err.strerror or err}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or socket"
        raise ArchError(f"{shown} is not a regular file (it is {kind})",
                        hint="give the path of a regular file")
    if limit is not None and st.st_size > limit:
        raise ArchError(f"{shown} is {st.st_size:,} bytes, more than the {limit:,} archc "
                        "reads from such a file", hint="is it the right file?")
    return st


def read_bytes(path, what: str | None = None, limit: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (whatever its size claims)."""
    shown = what or os.fspath(path)
    regular_file(path, what, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise ArchError(f"cannot read {shown}: {err.strerror or err}") from None
    if len(data) > limit:
        raise ArchError(f"{shown} is more than {limit:,} bytes")
    return data


def decode_text(data: bytes, what: str) -> str:
    """UTF-8 text (a byte-order mark dropped), or an error at the first invalid byte."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise ArchError(f"{what} is not UTF-8 text: byte {data[err.start]:02x} at line {line}, "
                        f"column {col} cannot be decoded", hint="save the file as UTF-8") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json(path, kind: type = dict, what: str | None = None, limit: int = MAX_JSON_BYTES):
    """Strict JSON (NaN and Infinity refused) from a regular file, of top-level type `kind`."""
    shown = what or os.fspath(path)
    text = decode_text(read_bytes(path, what, limit), shown)
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise ArchError(f"{shown}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}",
                        hint="is the folder damaged? rerun the command that wrote it") from None
    except (ValueError, RecursionError) as err:
        raise ArchError(f"{shown}: not valid JSON: {err}") from None
    if not isinstance(obj, kind):
        raise ArchError(f"{shown}: expected {_TYPES.get(kind, kind.__name__)}, got "
                        f"{_json_type(obj)}", hint="is the folder damaged? rerun the command "
                        "that wrote it")
    return obj


def _json_type(v) -> str:
    if v is None:
        return "null"
    for t in (bool, dict, list, str, int, float):
        if isinstance(v, t):
            return _TYPES[t]
    return type(v).__name__


def field(obj: dict, key: str, kind, what: str, required: bool = True):
    """obj[key], of type `kind` (a type or tuple); None when absent and not required."""
    if key not in obj:
        if required:
            raise ArchError(f"{what}: field '{key}' is missing")
        return None
    v = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)
    if ok and isinstance(v, float) and not math.isfinite(v):
        ok = False
    if not ok:
        want = "a number" if set(kinds) == {int, float} else \
            " or ".join(_TYPES.get(k, k.__name__) for k in kinds)
        raise ArchError(f"{what}: field '{key}' must be {want}, got {_json_type(v)}"
                        + (f" {v!r}"[:60] if isinstance(v, (int, float, str)) else ""))
    return v


def finite(value, what: str, low: float | None = None, high: float | None = None) -> float:
    """A finite number within [low, high] (either bound optional), or an error naming it."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and ((low is not None and value < low) or (high is not None and value > high)):
        ok = False
    if not ok:
        span = ("" if low is None and high is None else
                f" between {low} and {high}" if low is not None and high is not None else
                f" of at least {low}" if low is not None else f" of at most {high}")
        raise ArchError(f"{what} must be a finite number{span}, got {value!r}"[:200])
    return value


def count(n: float, limit: int, what: str, hint: str | None = None) -> int:
    """A count that an option implies (computed arithmetically), at most `limit`."""
    if not math.isfinite(n) or n > limit:
        shown = f"{n:.3g}" if math.isfinite(n) else "infinitely many"
        raise ArchError(f"{what} gives {shown} values, more than the {limit:,} allowed",
                        hint=hint)
    return int(n)


def tensors(path, what: str | None = None, allow_nonfinite: bool = False) -> dict:
    """{name: numpy array} of a safetensors file, checked before and after loading."""
    shown = what or os.fspath(path)
    st = regular_file(path, what)
    size = st.st_size
    with_hint = "is it a safetensors file written by archc (model.safetensors)?"
    if size < 8:
        raise ArchError(f"{shown} is not a safetensors file: {size} bytes, too short for its "
                        "header", hint=with_hint)
    avail = available_memory()
    if avail is not None and size > avail:
        raise ArchError(f"{shown} is {size:,} bytes, more than the {avail:,} bytes of memory "
                        "available", hint=with_hint)
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise ArchError(f"{shown} is not a safetensors file: its header claims {n:,} "
                                f"bytes of a {size:,}-byte file", hint=with_hint)
            head = f.read(n)
    except OSError as err:
        raise ArchError(f"cannot read {shown}: {err.strerror or err}") from None
    try:
        header = json.loads(head.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ArchError(f"{shown} is not a safetensors file: its header is not JSON",
                        hint=with_hint) from None
    if not isinstance(header, dict):
        raise ArchError(f"{shown} is not a safetensors file: its header is not a JSON object",
                        hint=with_hint)
    data_size = size - 8 - n
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"{shown}: tensor '{name}'"
        if not isinstance(entry, dict):
            raise ArchError(f"{where}: its header entry is not a JSON object", hint=with_hint)
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in SAFETENSORS_DTYPES:
            raise ArchError(f"{where} has dtype {str(dtype)[:20]}, which archc does not read",
                            hint="save the weights as float32 (F32); archc reads "
                                 + ", ".join(SAFETENSORS_DTYPES))
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d for d in shape)):
            raise ArchError(f"{where}: shape {str(shape)[:60]} is not a list of sizes",
                            hint=with_hint)
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ArchError(f"{where}: data_offsets {str(offsets)[:60]} is not [begin, end]",
                            hint=with_hint)
        want = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        begin, end = offsets
        if not 0 <= begin <= end <= data_size or end - begin != want:
            raise ArchError(f"{where}: its data ({begin}..{end}) does not fit the file or its "
                            f"shape {tuple(shape)} ({want:,} bytes): the file is truncated or "
                            "damaged", hint=with_hint)
    try:
        from safetensors.numpy import load_file
        out = dict(load_file(os.fspath(path)))
    except MemoryError:
        raise ArchError(f"{shown}: not enough memory to load it") from None
    except Exception as err:  # noqa: BLE001 - safetensors' own error type (SafetensorError)
        raise ArchError(f"{shown} cannot be read: {str(err)[:200]}", hint=with_hint) from None
    if not allow_nonfinite:
        finite_tensors(out, shown)
    return out


def finite_tensors(arrays: dict, what: str) -> None:
    """Every floating tensor of {name: array} finite, or an error naming the first that is not."""
    import numpy as np
    for name, arr in arrays.items():
        arr = np.asarray(arr)
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ArchError(f"{what}: tensor '{name}' has {bad:,} non-finite values (NaN or "
                            "infinity)", hint="the weights are damaged or training diverged: "
                            "use an earlier checkpoint, or retrain with a lower learning rate")


def no_extra_tensors(arrays: dict, used, network: str, what: str = "the weights") -> None:
    """Refuse tensors that no layer of the network has (torch's num_batches_tracked counters
    excepted): weights written for another network or other parameters."""
    extra = sorted(k for k in arrays if k not in used and not k.endswith(".num_batches_tracked"))
    if extra:
        raise ArchError(f"{what} hold {len(extra)} tensor(s) that no layer of {network} has: "
                        + ", ".join(extra[:3]) + (" ..." if len(extra) > 3 else ""),
                        hint="were the weights written for another network or other "
                             "parameters?")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def address(text: str, flag: str) -> tuple[str, int]:
    """(host, port) of `HOST:PORT` or `[IPv6]:PORT`: refused unless the host is a host name
    or an IP address and the port is 1..65535."""
    given = flag if flag.endswith("=") else flag + " "   # --coordinator X, coordinator=X
    hint = f"e.g. {given}10.0.0.1:1234 or {given}[fe80::1]:1234 or {given}node0:1234"
    t = text.strip()
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        ok_host = bool(sep)
        if ok_host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                ok_host = False
    else:
        host, sep, port = t.rpartition(":")
        ok_host = bool(sep) and _host_name(host)
        if not sep:
            port = None
    if not ok_host or port is None:
        raise ArchError(f"{flag} '{text[:100]}' is not HOST:PORT", hint=hint)
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ArchError(f"{flag} '{text[:100]}': the port must be a number from 1 to 65535",
                        hint=hint)
    return host, int(port)


def _host_name(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if not host or len(host) > 253 or not host.isascii():
        return False
    labels = host.rstrip(".").split(".")
    return all(0 < len(lb) <= 63 and lb[0] != "-" and lb[-1] != "-"
               and all(c.isalnum() or c in "-_" for c in lb) for lb in labels)


RUN_FIELDS = {"network": str, "params": dict, "recipe": dict, "data": dict}


def run_json(path, what: str | None = None) -> dict:
    """run.json of an `archc train` run: a JSON object whose network, params, recipe and data
    (where present) have their types (`field`)."""
    shown = what or os.fspath(path)
    run = read_json(path, dict, shown)
    for key, kind in RUN_FIELDS.items():
        field(run, key, kind, shown, required=False)
    return run
