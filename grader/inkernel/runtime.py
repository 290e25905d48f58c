"""Kernel side of the trust boundary: run student code, probe, report JSON.

This module runs inside the student's kernel. It imports only the standard
library, numpy and the legacy-backend stand-in: never the assignment's
reference, which stays in the grader process. Everything it reports is plain
JSON sent as a display message tagged with a per-run token; the grader judges
those plain values and nothing else.
"""

from __future__ import annotations

import io
import json
import math
import signal
import sys
import traceback
from typing import Any

import numpy as np

MIME = "application/vnd.grader.report+json"
#: Characters of printed output kept per call; the rest is counted, not kept.
OUTPUT_CAP = 64 * 1024
#: Array elements reported per value; larger results are reported by shape.
VALUE_CAP = 10_000
#: Items of a tuple or list reported; nesting depth followed.
ITEM_CAP = 16
DEPTH_CAP = 4
MESSAGE_CAP = 500

# Taken before any student code runs, so that monkeypatching numpy from the
# notebook cannot change how results are read.
_ndarray = np.ndarray
_generic = np.generic
_asarray = np.asarray
_array = np.array


class _CaseTimeout(BaseException):
    """Raised by the alarm inside a case that runs past its limit."""


class _CappedStream(io.TextIOBase):
    def __init__(self, cap: int = OUTPUT_CAP) -> None:
        self.kept: list[str] = []
        self.size = 0
        self.cap = cap

    def write(self, text: Any) -> int:
        text = str(text)
        if self.size < self.cap:
            self.kept.append(text[: self.cap - self.size])
        self.size += len(text)
        return len(text)

    def writable(self) -> bool:
        return True

    def summary(self) -> dict[str, Any]:
        return {"text": "".join(self.kept), "chars": self.size}


def _namespace() -> dict[str, Any]:
    try:
        shell = get_ipython()  # type: ignore[name-defined]
    except NameError:
        shell = None
    if shell is not None:
        return shell.user_ns
    import __main__

    return __main__.__dict__


def _emit(token: str, kind: str, body: Any) -> None:
    from IPython.display import display

    display({MIME: {"token": token, "kind": kind, "body": body}}, raw=True)


def setup(payload: str) -> dict[str, Any]:
    """Put the legacy Keras/TensorFlow stand-in in place as asked."""
    request = json.loads(payload)
    from . import legacy_backend

    try:
        report = legacy_backend.install(request.get("backend", "auto"))
    except ModuleNotFoundError as exc:
        report = {"error": str(exc)}
    _emit(request["token"], "setup", report)
    return report


def run_snippets(payload: str) -> list[dict[str, Any]]:
    """Run each snippet on its own; one failure never stops the others."""
    request = json.loads(payload)
    body = run_snippets_in(request["snippets"], _namespace())
    _emit(request["token"], "snippets", body)
    return body["statuses"]


def run_snippets_in(
    snippets: list[dict[str, Any]], namespace: dict[str, Any]
) -> dict[str, Any]:
    """Run snippets in `namespace`; report each one's status and the output."""
    statuses = []
    stream = _CappedStream()
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    try:
        for snippet in snippets:
            statuses.append(_run_source(snippet, namespace))
    finally:
        sys.stdout, sys.stderr = saved
    _fill_backend_gaps()
    return {"statuses": statuses, "output": stream.summary()}


def _run_source(snippet: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    cell = snippet["cell"]
    try:
        code = compile(snippet["source"], f"<cell {cell}>", "exec")
        exec(code, namespace)
    except BaseException as exc:  # the student's code: anything can happen
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"cell": cell, "line": snippet.get("line"), "ok": False,
                "error": _describe_exception(exc)}
    return {"cell": cell, "line": snippet.get("line"), "ok": True, "error": None}


def _fill_backend_gaps() -> None:
    try:
        from . import legacy_backend

        legacy_backend.fill_gaps()
    except Exception:  # a gap left open shows up as the student's error
        pass


def probe(payload: str) -> dict[str, Any]:
    """Call one graded function on each case; report plain observations."""
    request = json.loads(payload)
    body = probe_namespace(request, _namespace())
    _emit(request["token"], "probe", body)
    return body


def probe_namespace(
    request: dict[str, Any], namespace: dict[str, Any]
) -> dict[str, Any]:
    """Probe the function `request["function"]` found in `namespace`."""
    name = request["function"]
    function = namespace.get(name)
    if function is None:
        return {"function": name, "found": False, "cases": []}

    stream = _CappedStream()
    outcomes = []
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = stream
    try:
        for case in request["cases"]:
            outcomes.append(_probe_case(function, case, request.get("case_timeout", 5)))
    finally:
        sys.stdout, sys.stderr = saved
    return {"function": name, "found": True, "callable": callable(function),
            "cases": outcomes, "output": stream.summary()}


def _probe_case(function: Any, case: dict[str, Any], timeout: float) -> dict[str, Any]:
    outcome: dict[str, Any] = {"id": case["id"], "result": None, "error": None,
                               "mutated": [], "timed_out": False}
    target = function
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        for step, raw_args in enumerate(case["calls"]):
            args = [_decode_input(value) for value in raw_args]
            snapshots = [_snapshot(arg) for arg in args]
            if not callable(target):
                raise TypeError(f"{type(target).__name__!r} object is not callable")
            target = target(*args)
            for index, (arg, snapshot) in enumerate(zip(args, snapshots, strict=True)):
                if snapshot is not None and _changed(arg, snapshot):
                    outcome["mutated"].append([step, index])
        signal.setitimer(signal.ITIMER_REAL, 0)
        outcome["result"] = _observe(target, 0)
    except _CaseTimeout:
        outcome["timed_out"] = True
    except BaseException as exc:  # the student's code: anything can happen
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome["error"] = _describe_exception(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return outcome


def _on_alarm(signum: int, frame: Any) -> None:
    raise _CaseTimeout()


def _decode_input(value: Any) -> Any:
    if isinstance(value, dict) and "array" in value:
        return _array(value["array"], dtype=value.get("dtype"))
    return value


def _snapshot(arg: Any) -> Any:
    if type(arg) is _ndarray:
        return (arg.shape, arg.dtype.str, arg.tobytes())
    return None


def _changed(arg: Any, snapshot: Any) -> bool:
    if type(arg) is not _ndarray:
        return True
    return (arg.shape, arg.dtype.str, arg.tobytes()) != snapshot


def _describe_exception(exc: BaseException) -> dict[str, Any]:
    try:
        message = str(exc)
    except Exception:
        message = "<the exception's message could not be printed>"
    cell = line = None
    function_name = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename.startswith("<cell "):
            cell = int(filename[6:-1])
            line = lineno
            function_name = frame.f_code.co_name
    if (isinstance(exc, SyntaxError) and exc.filename
            and exc.filename.startswith("<cell ")):
        cell, line = int(exc.filename[6:-1]), exc.lineno
    return {
        "type": type(exc).__name__,
        "module": type(exc).__module__,
        "message": message[:MESSAGE_CAP],
        "cell": cell,
        "line": line,
        "in": function_name,
    }


def _observe(value: Any, depth: int) -> dict[str, Any]:
    """A JSON description of a result, trusting only exact known types."""
    kind_of = type(value)
    if value is None:
        return {"kind": "none", "type": "NoneType"}
    if kind_of in (bool, int, float):
        return {"kind": "python_scalar", "type": kind_of.__name__,
                "dtype": kind_of.__name__, "shape": [],
                "values": _json_number(value)}
    if kind_of is _ndarray:
        return _array_observation("ndarray", "numpy.ndarray", value)
    if isinstance(value, _generic) and kind_of.__module__ == "numpy":
        return _array_observation("numpy_scalar", f"numpy.{kind_of.__name__}",
                                  _asarray(value))
    tensor = _tensor_array(value)
    if tensor is not None:
        return _array_observation("tensor", _type_name(value), tensor)
    if kind_of in (tuple, list):
        if depth >= DEPTH_CAP:
            return {"kind": "object", "type": kind_of.__name__, "too_deep": True}
        items = [_observe(item, depth + 1) for item in list(value)[:ITEM_CAP]]
        if kind_of is list and items and all(
            item["kind"] in ("python_scalar", "numpy_scalar") for item in items
        ):
            return _list_of_numbers(value)
        return {"kind": kind_of.__name__, "type": kind_of.__name__,
                "length": len(value), "items": items}
    if callable(value):
        return {"kind": "callable", "type": _type_name(value)}
    return {"kind": "object", "type": _type_name(value)}


def _tensor_array(value: Any) -> Any:
    from . import legacy_backend

    if _is_standin_tensor(value, legacy_backend):
        return _asarray(value._array)
    module = type(value).__module__ or ""
    if module.startswith("tensorflow") and type(value).__name__ in (
        "EagerTensor", "Tensor", "ResourceVariable"
    ) and _from_real_tensorflow(module):
        return _asarray(value.numpy())
    return None


def _real_tensorflow_folder() -> str | None:
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("tensorflow")
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return os.path.dirname(origin) if origin else None


def _is_standin_tensor(value: Any, legacy_backend: Any) -> bool:
    # Replaced, in the sealed copy, by the check taken before student code ran.
    return bool(legacy_backend.is_tensor(value))


# Found before any student code runs: a class that only calls itself a
# TensorFlow tensor is not one.
_TENSORFLOW_FOLDER = _real_tensorflow_folder()


def _from_real_tensorflow(module_name: str) -> bool:
    # Known shortcoming: sys.modules is the submission's to change, so a
    # planted module whose __file__ names a path in TensorFlow's folder
    # passes; a NumPy result is then described as a tensor (the type
    # points only: values are judged in the grader). Holding TensorFlow's
    # own class instead would mean importing it, seconds, in every worker.
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None) or ""
    return bool(_TENSORFLOW_FOLDER) and source.startswith(_TENSORFLOW_FOLDER)


def _list_of_numbers(value: list[Any]) -> dict[str, Any]:
    try:
        array = _asarray([float(item) for item in value])
    except Exception:
        return {"kind": "object", "type": "list"}
    observation = _array_observation("list", "list", array)
    return observation


def _array_observation(kind: str, type_name: str, array: Any) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "kind": kind,
        "type": type_name,
        "dtype": str(array.dtype),
        "shape": list(array.shape),
    }
    if array.size > VALUE_CAP:
        observation["values"] = None
        observation["too_large"] = True
    elif array.dtype.kind in "biuf":
        observation["values"] = _json_values(array.astype(np.float64).tolist())
    else:
        observation["values"] = None
    return observation


def _json_values(values: Any) -> Any:
    if isinstance(values, list):
        return [_json_values(v) for v in values]
    return _json_number(values)


def _json_number(value: Any) -> Any:
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _type_name(value: Any) -> str:
    kind_of = type(value)
    module = kind_of.__module__
    if module in (None, "builtins"):
        return kind_of.__qualname__
    return f"{module}.{kind_of.__qualname__}"


def private_globals(module_globals: dict[str, Any]) -> dict[str, Any]:
    """A snapshot of a module's globals and of the builtins: later changes
    to either (`type` or `isinstance` replaced, say) do not reach it."""
    import builtins

    private = dict(module_globals)
    private["__builtins__"] = dict(vars(builtins))
    return private


def private_copy(function: Any, private: dict[str, Any]) -> Any:
    """`function`, looking up its global names in `private`."""
    import types

    return types.FunctionType(function.__code__, private, function.__name__,
                              function.__defaults__, function.__closure__)


def sealed_probe() -> Any:
    """`probe_namespace` as it is now, out of reach of later changes.

    Student code runs in the same process as the probe, and could replace
    `runtime._observe` (say) to report a NumPy result as a tensor. The copy
    returned here looks up its helpers in a private snapshot of this
    module, the stand-in's tensor type included, so replacing names in the
    modules changes nothing it calls. Call it before any student code runs.

    Known shortcoming: code that walks the interpreter's frames or objects
    can still reach the snapshot. What it can fake is how a result is
    described (its type), never the values: those are judged against the
    hidden expectations in the grader, outside this process.
    """
    import types

    from . import legacy_backend

    private = private_globals(globals())
    for name, value in list(private.items()):
        if isinstance(value, types.FunctionType) and value.__module__ == __name__:
            private[name] = private_copy(value, private)
    standin_tensor = legacy_backend.Tensor
    exact_type = type  # the builtin as it is now, not as it may become
    private["_is_standin_tensor"] = (
        lambda value, _module: exact_type(value) is standin_tensor)
    return private["probe_namespace"]
