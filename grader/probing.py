"""Stage 4 (grader side): what to ask the kernel, and reading its answers.

The kernel answers in plain JSON (see `grader.inkernel.runtime`). Everything
here treats that JSON as untrusted: each field is checked for its type and
size, and anything malformed becomes a failed observation, never a crash and
never a pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader.assignment import Case

#: Largest number of array elements accepted back from the kernel.
VALUE_LIMIT = 10_000


@dataclass(frozen=True)
class Observed:
    """A result as the kernel described it: kind, type and plain values."""

    kind: str  # none, python_scalar, numpy_scalar, ndarray, tensor, list,
    #            tuple, callable, object
    type_name: str
    dtype: str | None = None
    shape: tuple[int, ...] | None = None
    #: float64 values (nan and inf kept); None when not numeric or too large.
    values: np.ndarray | None = None
    items: tuple[Observed, ...] = ()


@dataclass(frozen=True)
class RaisedError:
    type: str
    message: str
    #: Where in the notebook the innermost student frame was, if known.
    cell: int | None
    line: int | None
    in_function: str | None


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    result: Observed | None
    error: RaisedError | None
    #: (call step, argument index) of each argument changed in place.
    mutated: tuple[tuple[int, int], ...]
    timed_out: bool


@dataclass(frozen=True)
class FunctionRun:
    """How probing one graded function went."""

    name: str
    #: "ran", "missing", "timeout", "crashed", "tampered" (something else
    #: wrote to the report channel) or "malformed".
    status: str
    outcomes: tuple[CaseOutcome, ...] = ()
    reason: str = ""
    output: str = ""


def probe_request(name: str, cases: list[Case], case_timeout: float) -> dict[str, Any]:
    """The JSON sent to the kernel to probe one function."""
    return {
        "function": name,
        "case_timeout": case_timeout,
        "cases": [{"id": case.id, "calls": [list(c) for c in case.calls]}
                  for case in cases],
    }


def read_probe_report(name: str, body: Any) -> FunctionRun:
    """Turn the kernel's probe report into a FunctionRun, defensively."""
    if not isinstance(body, dict) or body.get("function") != name:
        return FunctionRun(name, "malformed", reason="the probe report was unreadable")
    if not body.get("found"):
        return FunctionRun(name, "missing")
    raw_cases = body.get("cases")
    if not isinstance(raw_cases, list):
        return FunctionRun(name, "malformed", reason="the probe report had no cases")
    try:
        outcomes = tuple(_case_outcome(raw) for raw in raw_cases)
    except (TypeError, ValueError, KeyError) as exc:
        return FunctionRun(name, "malformed", reason=f"unreadable observation: {exc}")
    output = body.get("output", {})
    printed = output.get("text", "") if isinstance(output, dict) else ""
    return FunctionRun(name, "ran", outcomes, output=str(printed)[:2000])


def _case_outcome(raw: dict[str, Any]) -> CaseOutcome:
    error = raw.get("error")
    return CaseOutcome(
        case_id=str(raw["id"]),
        result=observed_from_json(raw["result"]) if raw.get("result") else None,
        error=_raised(error) if isinstance(error, dict) else None,
        mutated=tuple((int(s), int(i)) for s, i in raw.get("mutated", [])),
        timed_out=bool(raw.get("timed_out", False)),
    )


def _raised(raw: dict[str, Any]) -> RaisedError:
    return RaisedError(
        type=str(raw.get("type", "Exception"))[:100],
        message=str(raw.get("message", ""))[:500],
        cell=_optional_int(raw.get("cell")),
        line=_optional_int(raw.get("line")),
        in_function=str(raw["in"])[:100] if raw.get("in") else None,
    )


def observed_from_json(raw: Any, depth: int = 0) -> Observed:
    if not isinstance(raw, dict) or depth > 6:
        raise ValueError("not an observation")
    kind = str(raw.get("kind", "object"))
    items = ()
    if kind in ("tuple", "list") and isinstance(raw.get("items"), list):
        items = tuple(observed_from_json(item, depth + 1) for item in raw["items"][:16])
    shape = raw.get("shape")
    values = raw.get("values")
    array = None
    if isinstance(shape, list) and values is not None:
        shape_tuple = tuple(int(n) for n in shape)
        if math.prod(shape_tuple) <= VALUE_LIMIT:
            array = _float_array(values).reshape(shape_tuple)
    return Observed(
        kind=kind,
        type_name=str(raw.get("type", kind))[:200],
        dtype=str(raw["dtype"])[:40] if raw.get("dtype") else None,
        shape=tuple(int(n) for n in shape) if isinstance(shape, list) else None,
        values=array,
        items=items,
    )


def _float_array(values: Any) -> np.ndarray:
    def number(value: Any) -> float:
        if isinstance(value, str):
            if value not in ("nan", "inf", "-inf"):
                raise ValueError(f"unexpected value {value[:20]!r}")
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("a value is not a number")
        return float(value)

    def convert(value: Any) -> Any:
        if isinstance(value, list):
            return [convert(v) for v in value]
        return number(value)

    return np.asarray(convert(values), dtype=np.float64)


#: The largest cell or line number taken from a submission's report. The
#: submission chooses them (a code object can claim any file name and
#: line), so they are bounded: a huge one cannot be stored, and its digits
#: could carry data.
LARGEST_POSITION = 100_000


def _optional_int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) \
            and 0 <= value <= LARGEST_POSITION:
        return int(value)
    return None
