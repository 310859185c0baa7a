"""Arguments and results between the grader and a submission's kernel, as plain data.

A check runs in the grading worker, never in the submission's kernel; only the
student's function runs there. Each call sends its arguments to the kernel and
reads the result back through this codec: JSON with tagged tensors, arrays and
tables (raw bytes of a whitelisted dtype), nothing that runs code when decoded (no
pickle). Whatever the kernel sends back is data, so a submission can return a
wrong value but never a verdict.

:func:`serve` is the kernel side: it resolves an expression in the notebook's
namespace, calls it, and prints one line ``ATTNBOOK-WIRE <nonce> <json>``.
"""

from __future__ import annotations

import base64
import json
import math
import sys
from typing import Any

__all__ = ["encode", "decode", "dumps", "loads", "serve", "WireError", "MARK", "MAX_BYTES"]

MARK = "ATTNBOOK-WIRE"
MAX_BYTES = 64 * 2**20  # the largest message either side accepts
_MAX_DEPTH = 32
_DTYPES = {"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "complex64",
           "complex128"}


class WireError(ValueError):
    """A value that cannot cross between grader and kernel, or a malformed message."""


def _tensor_parts(x: Any) -> tuple[str, list[int], str]:
    import numpy as np

    array = np.ascontiguousarray(x)
    if array.dtype.name not in _DTYPES:
        raise WireError(f"expected an array of one of {sorted(_DTYPES)}, got dtype {array.dtype.name}")
    return array.dtype.name, list(array.shape), base64.b64encode(array.tobytes()).decode("ascii")


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-able form of ``value`` (numbers, strings, None, lists, tuples, dicts, tensors, arrays, DataFrames)."""
    if depth > _MAX_DEPTH:
        raise WireError(f"expected a value nested at most {_MAX_DEPTH} deep")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"t": "float", "v": repr(value)} if not math.isfinite(value) else value
    if isinstance(value, (list, tuple)):
        return {"t": type(value).__name__, "v": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    module = type(value).__module__.split(".")[0]
    if module == "torch":
        torch = sys.modules["torch"]
        if isinstance(value, torch.Size):
            return {"t": "tuple", "v": list(value)}
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            if tensor.dtype == torch.bfloat16:
                tensor = tensor.float()
            dtype, shape, data = _tensor_parts(tensor.resolve_conj().numpy())
            return {"t": "tensor", "dtype": dtype, "shape": shape, "data": data}
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.generic):
            return encode(value.item(), depth)
        if isinstance(value, np.ndarray):
            dtype, shape, data = _tensor_parts(value)
            return {"t": "ndarray", "dtype": dtype, "shape": shape, "data": data}
    if module == "pandas" and type(value).__name__ == "DataFrame":
        return {"t": "frame", "columns": [encode(c, depth + 1) for c in value.columns],
                "data": [encode(value[c].to_numpy(), depth + 1) for c in value.columns],
                "index": encode(value.index.to_numpy(), depth + 1)}
    raise WireError(f"expected numbers, strings, None, lists, tuples, dicts, tensors, arrays or DataFrames, "
                    f"got {type(value).__module__}.{type(value).__name__}")


def _array(obj: dict) -> Any:
    import numpy as np

    dtype, shape = obj.get("dtype"), obj.get("shape")
    if dtype not in _DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise WireError(f"expected an array with a known dtype and a shape, got dtype {dtype!r}, shape {shape!r}")
    data = base64.b64decode(obj.get("data", ""), validate=True)
    array = np.frombuffer(data, dtype=np.dtype(dtype))
    if array.size != math.prod(shape):
        raise WireError(f"expected {math.prod(shape)} elements for shape {shape}, got {array.size}")
    return array.reshape(shape).copy()


def decode(obj: Any, depth: int = 0) -> Any:
    """The value that :func:`encode` encoded; raises :class:`WireError` for anything else."""
    if depth > _MAX_DEPTH:
        raise WireError(f"expected a value nested at most {_MAX_DEPTH} deep")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("t"), str):
        raise WireError(f"expected a tagged value, got {type(obj).__name__}")
    tag = obj["t"]
    if tag == "float" and obj.get("v") in {"nan", "inf", "-inf"}:
        return float(obj["v"])
    if tag in {"list", "tuple"} and isinstance(obj.get("v"), list):
        items = [decode(v, depth + 1) for v in obj["v"]]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and isinstance(obj.get("v"), list):
        pairs = [(decode(k, depth + 1), decode(v, depth + 1)) for k, v in obj["v"]]
        if not all(isinstance(k, (str, int, float, bool, tuple)) or k is None for k, _ in pairs):
            raise WireError("expected dict keys that are numbers, strings or tuples")
        return dict(pairs)
    if tag == "ndarray":
        return _array(obj)
    if tag == "tensor":
        import torch

        return torch.from_numpy(_array(obj))
    if tag == "frame" and isinstance(obj.get("columns"), list) and isinstance(obj.get("data"), list):
        import pandas as pd

        columns = [decode(c, depth + 1) for c in obj["columns"]]
        data = [decode(d, depth + 1) for d in obj["data"]]
        if len(columns) != len(data):
            raise WireError("expected one data array per DataFrame column")
        return pd.DataFrame(dict(zip(columns, data)), index=decode(obj.get("index"), depth + 1))
    raise WireError(f"expected a known tag, got {tag!r}")


def dumps(value: Any) -> str:
    text = json.dumps(encode(value), allow_nan=False, separators=(",", ":"))
    if len(text) > MAX_BYTES:
        raise WireError(f"expected a message of at most {MAX_BYTES} bytes, got {len(text)}")
    return text


def loads(text: str) -> Any:
    if not isinstance(text, str) or len(text) > MAX_BYTES:
        raise WireError(f"expected a message (str) of at most {MAX_BYTES} bytes")
    try:
        return decode(json.loads(text))
    except (json.JSONDecodeError, RecursionError, TypeError, KeyError, ValueError) as error:
        if isinstance(error, WireError):
            raise
        raise WireError(f"malformed message: {type(error).__name__}: {error}") from None


def serve(resolve: Any, mode: str, payload: str, nonce: str) -> None:
    """Kernel side: resolve the expression, then report it (``"resolve"``) or call it (``"call"``).

    Prints exactly one line: ``ATTNBOOK-WIRE <nonce> <json>`` with ``{"ok": ...}``,
    ``{"callable": true}``, ``{"raised": [name, message]}`` or ``{"unresolved": [name, message]}``.
    """
    try:
        target = resolve()
    except BaseException as error:  # noqa: BLE001 - any failure is reported to the grader as data
        reply: dict[str, Any] = {"unresolved": [type(error).__name__, str(error)[:500]]}
    else:
        if mode == "resolve":
            reply = {"callable": True} if callable(target) else {"ok": target}
        else:
            try:
                call = loads(payload)
                reply = {"ok": target(*call["args"], **call["kwargs"])}
            except BaseException as error:  # noqa: BLE001
                if isinstance(error, KeyboardInterrupt):
                    raise
                reply = {"raised": [type(error).__name__, str(error)[:500]]}
    try:
        text = dumps(reply)
    except (WireError, TypeError, ValueError) as error:
        text = dumps({"raised": ["TypeError", f"the result cannot be sent to the grader: {error}"]})
    print(f"\n{MARK} {nonce} {text}", flush=True)
