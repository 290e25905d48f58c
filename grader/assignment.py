"""Load an assignment from its folder in `reference/`.

An assignment folder holds everything the engine must know and nothing the
engine hard-codes: `assignment.toml` (graded functions, points, tolerances),
`cases.json` (inputs, public or hidden), `catalogue.toml` (known mistakes and
their hint texts) and `model.py` (the reference as one computation whose
knobs are the known mistakes).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from grader.errors import AssignmentError

MISTAKE_KINDS = ("value", "type", "mutation", "unfinished")


@dataclass(frozen=True)
class GradedFunction:
    """A function the students write and the grader probes."""

    name: str
    #: Name of the function in `model.py` that computes this function's
    #: result for a knob setting: ``model(knobs, *calls)``.
    model: str
    value_points: float
    type_points: float
    #: Kinds of result leaf accepted as the right type ("tensor", "ndarray",
    #: "numpy_scalar", "python_scalar", "list").
    accept_kinds: tuple[str, ...]
    #: Words for the expected result, used in hints ("a scalar tensor").
    result_words: str
    #: The function's skeleton with a `{body}` line, where a forum fragment
    #: (a body pasted without its `def`) is placed.
    fragment_skeleton: str = ""

    @property
    def fragment_names(self) -> frozenset[str]:
        """Parameter names of the skeleton: a fragment using them fits here."""
        if not self.fragment_skeleton:
            return frozenset()
        tree = ast.parse(self.fragment_skeleton.replace("{body}", "pass"))
        return frozenset(arg.arg for node in ast.walk(tree)
                         if isinstance(node, ast.arguments)
                         for arg in node.args)

    @property
    def max_score(self) -> float:
        return self.value_points + self.type_points


@dataclass(frozen=True)
class Case:
    """One probe of a graded function: a chain of calls and their arguments.

    `calls[0]` are the arguments of the graded function itself; each next
    entry calls what the previous call returned (a factory's inner function).
    Hidden cases never appear in feedback or in the student package.
    """

    id: str
    function: str
    public: bool
    description: str
    calls: tuple[tuple[Any, ...], ...]
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mistake:
    """A catalogued mistake: how to reproduce it, find it and explain it."""

    id: str
    function: str
    #: "value" (a knob setting of the model), "type" (result of the wrong
    #: kind), "mutation" (an argument changed in place) or "unfinished".
    kind: str
    #: Knob settings that reproduce the mistake; any one may match.
    variants: tuple[dict[str, Any], ...]
    conflicts: tuple[str, ...]
    #: Ways to find the responsible construct, tried in order (locating.py).
    locate: tuple[dict[str, Any], ...]
    points: float
    what: str
    evidence: str
    fix: str
    #: For kind "type": the result kinds that mean this mistake.
    result_kinds: tuple[str, ...] = ()
    #: Show as evidence a case where the result is inf or nan, if any.
    prefer_nonfinite: bool = False

    @property
    def knob_names(self) -> frozenset[str]:
        return frozenset(k for variant in self.variants for k in variant)


@dataclass(frozen=True)
class Tolerance:
    """Closeness of two floats: |got - expected| <= atol + rtol * |expected|."""

    rtol: float = 1e-4
    atol: float = 1e-6


@dataclass(frozen=True)
class Assignment:
    name: str
    title: str
    version: str
    root: Path
    functions: tuple[GradedFunction, ...]
    cases: tuple[Case, ...]
    catalogue: tuple[Mistake, ...]
    tolerance: Tolerance
    #: A digest of every file of the assignment: results graded against
    #: another version are never reused.
    digest: str
    #: Imports put before code pasted on a forum, which rarely has its own.
    forum_imports: str = ""

    def function(self, name: str) -> GradedFunction:
        for graded in self.functions:
            if graded.name == name:
                return graded
        raise KeyError(name)

    def cases_for(self, name: str, public_only: bool = False) -> list[Case]:
        return [
            case
            for case in self.cases
            if case.function == name and (case.public or not public_only)
        ]

    def mistakes_for(self, name: str) -> list[Mistake]:
        return [m for m in self.catalogue if m.function == name]

    def mistake(self, mistake_id: str) -> Mistake:
        for mistake in self.catalogue:
            if mistake.id == mistake_id:
                return mistake
        raise KeyError(mistake_id)

    def load_model(self) -> ModuleType:
        """Import `model.py`; only ever in the grader process."""
        return _import_model(self.root / "model.py", self.name)

    def model_function(self, name: str) -> Callable[..., Any]:
        model = self.load_model()
        return getattr(model, self.function(name).model)


def default_assignment_dir() -> Path:
    """The assignment shipped with the package, or the checkout's one."""
    package_dir = Path(__file__).resolve().parent
    for base in (package_dir / "_reference", package_dir.parent / "reference"):
        if base.is_dir():
            found = sorted(p.parent for p in base.glob("*/assignment.toml"))
            if len(found) == 1:
                return found[0]
            if found:
                names = ", ".join(p.name for p in found)
                raise AssignmentError(
                    f"{base} holds several assignments ({names}); "
                    "choose one with --assignment"
                )
    raise AssignmentError(
        "no default assignment found; pass --assignment reference/<name>"
    )


def load_assignment(folder: Path | None = None) -> Assignment:
    folder = Path(folder) if folder else default_assignment_dir()
    manifest_path = folder / "assignment.toml"
    if not manifest_path.is_file():
        raise AssignmentError(
            f"{folder}: no assignment.toml; an assignment folder needs "
            "assignment.toml, cases.json, catalogue.toml and model.py"
        )

    manifest = _read_toml(manifest_path)
    functions = tuple(_graded_function(manifest_path, f)
                      for f in manifest.get("functions", []))
    names = {f.name for f in functions}
    if not functions:
        raise AssignmentError(f"{manifest_path}: no [[functions]] declared")

    cases = tuple(_read_cases(folder / "cases.json", names))
    catalogue = tuple(_read_catalogue(folder / "catalogue.toml", names))
    model = _import_model(folder / "model.py", manifest.get("name", folder.name))
    for graded in functions:
        if not callable(getattr(model, graded.model, None)):
            raise AssignmentError(
                f"{folder / 'model.py'}: no function {graded.model!r} "
                f"(the model of {graded.name})"
            )

    tolerance = Tolerance(**manifest.get("tolerance", {}))
    return Assignment(
        name=str(manifest.get("name", folder.name)),
        title=str(manifest.get("title", folder.name)),
        version=str(manifest.get("version", "1")),
        root=folder,
        functions=functions,
        cases=cases,
        catalogue=catalogue,
        tolerance=tolerance,
        digest=_digest(folder),
        forum_imports=str(manifest.get("forum_imports", "")),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AssignmentError(f"{path}: cannot read: {exc}") from exc


def _graded_function(path: Path, raw: dict[str, Any]) -> GradedFunction:
    try:
        return GradedFunction(
            name=raw["name"],
            model=raw.get("model", raw["name"]),
            value_points=float(raw["value_points"]),
            type_points=float(raw.get("type_points", 0)),
            accept_kinds=tuple(raw["accept_kinds"]),
            result_words=raw.get("result_words", "the expected result"),
            fragment_skeleton=raw.get("fragment_skeleton", ""),
        )
    except KeyError as exc:
        raise AssignmentError(f"{path}: a [[functions]] entry lacks {exc}") from exc


def _read_cases(path: Path, names: set[str]) -> list[Case]:
    try:
        raw_cases = json.loads(path.read_text(encoding="utf-8"))["cases"]
    except (OSError, ValueError, KeyError) as exc:
        raise AssignmentError(f"{path}: cannot read cases: {exc}") from exc

    cases = []
    for raw in raw_cases:
        if raw.get("function") not in names:
            raise AssignmentError(
                f"{path}: case {raw.get('id')!r} names unknown function "
                f"{raw.get('function')!r}"
            )
        cases.append(Case(
            id=raw["id"],
            function=raw["function"],
            public=bool(raw.get("public", False)),
            description=raw.get("description", raw["id"]),
            calls=tuple(tuple(call) for call in raw["calls"]),
            facts=dict(raw.get("facts", {})),
        ))
    if len({c.id for c in cases}) != len(cases):
        raise AssignmentError(f"{path}: case ids must be unique")
    return cases


def _read_catalogue(path: Path, names: set[str]) -> list[Mistake]:
    if not path.exists():
        return []
    mistakes = []
    for raw in _read_toml(path).get("mistake", []):
        mistake_id = raw.get("id", "?")
        if raw.get("function") not in names:
            raise AssignmentError(
                f"{path}: mistake {mistake_id} names unknown function "
                f"{raw.get('function')!r}"
            )
        kind = raw.get("kind", "value")
        if kind not in MISTAKE_KINDS:
            raise AssignmentError(
                f"{path}: mistake {mistake_id} has kind {kind!r}; "
                f"use one of {', '.join(MISTAKE_KINDS)}"
            )
        variants = raw.get("variants") or ([raw["knobs"]] if "knobs" in raw else [])
        if kind == "value" and not variants:
            raise AssignmentError(
                f"{path}: value mistake {mistake_id} needs knobs or variants"
            )
        mistakes.append(Mistake(
            id=mistake_id,
            function=raw["function"],
            kind=kind,
            variants=tuple(dict(v) for v in variants),
            conflicts=tuple(raw.get("conflicts", ())),
            locate=_locate_rules(raw.get("locate", ())),
            points=float(raw.get("points", 0)),
            what=raw["what"],
            evidence=raw.get("evidence", ""),
            fix=raw["fix"],
            result_kinds=tuple(raw.get("result_kinds", ())),
            prefer_nonfinite=bool(raw.get("prefer_nonfinite", False)),
        ))
    return mistakes


def _locate_rules(raw: Any) -> tuple[dict[str, Any], ...]:
    rules = [raw] if isinstance(raw, dict) else list(raw)
    return tuple(dict(rule) for rule in rules)


def _import_model(path: Path, name: str) -> ModuleType:
    module_name = f"_grader_model_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AssignmentError(f"{path}: cannot load the model")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the assignment author's code: report, stop
        raise AssignmentError(f"{path}: the model fails to import: {exc}") from exc
    return module


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
