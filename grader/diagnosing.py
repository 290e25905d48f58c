"""Stage 6: name the mistakes behind a function's outcomes.

The assignment's model is one computation whose knobs are the catalogued
mistakes. Diagnosis looks for the smallest set of mistakes (up to three)
whose model outputs reproduce the student's outcome on every case. Outputs
of every candidate set are computed once per batch (`DiagnosisTable`); a
submission only compares against them. Errors raised by the student's code,
results of the wrong type and arguments changed in place are explained too.
"""

from __future__ import annotations

import builtins
import itertools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from grader import mistake_outputs
from grader.assignment import Assignment, Case, Mistake
from grader.comparing import (
    Difference,
    Expected,
    describe,
    expected_from,
    first_difference,
    matches,
    result_leaves,
)
from grader.locating import LocatedCode
from grader.pinpointing import (
    FunctionTree,
    find_line,
    find_name,
    function_tree,
    has_placeholder,
)
from grader.probing import CaseOutcome, FunctionRun

log = logging.getLogger(__name__)

#: Largest number of catalogued mistakes combined to explain one function.
MAX_MISTAKES = 3


@dataclass(frozen=True)
class Diagnosis:
    """One thing wrong with a graded function, explained for the student."""

    id: str
    message: str
    #: "value", "type", "mutation", "unfinished" or "error" (the function
    #: could not be judged: missing, syntax error, raised, timed out ...).
    kind: str
    #: Points this diagnosis costs (scoring caps the total).
    points: float
    cell: int | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "message": self.message, "cell": self.cell,
                "line": self.line, "points_lost": self.points, "kind": self.kind}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Diagnosis:
        return cls(raw["id"], raw["message"], raw.get("kind", "value"),
                   float(raw.get("points_lost", 0)), raw.get("cell"), raw.get("line"))


@dataclass(frozen=True)
class Candidate:
    """A set of catalogued mistakes and what the model then outputs."""

    mistakes: tuple[Mistake, ...]
    knobs: dict[str, Any]
    predictions: dict[str, Expected]


class DiagnosisTable:
    """Reference outputs and outputs of every mistake set, for one batch."""

    def __init__(self, assignment: Assignment, public_only: bool = False,
                 public_evidence: bool = False) -> None:
        self.assignment = assignment
        #: Show evidence from public cases whenever one shows the mistake.
        self.public_evidence = public_evidence
        self.cases: dict[str, list[Case]] = {}
        self.reference: dict[str, dict[str, Expected]] = {}
        self.candidates: dict[str, list[list[Candidate]]] = {}
        model = assignment.load_model()
        stored_in = mistake_outputs.cache_file(assignment.digest, public_only)
        stored = mistake_outputs.load(
            stored_in, {m.id: m for m in assignment.catalogue})
        for graded in assignment.functions:
            cases = assignment.cases_for(graded.name, public_only)
            # Public cases first: their inputs may be quoted in hints.
            cases.sort(key=lambda case: not case.public)
            compute = getattr(model, graded.model)
            inputs = {case.id: decode_calls(case.calls) for case in cases}
            self.cases[graded.name] = cases
            self.reference[graded.name] = {
                case.id: expected_from(
                    lambda c=case, run=compute, given=inputs: run({}, *given[c.id]))
                for case in cases
            }
            if stored is not None and graded.name in stored:
                self.candidates[graded.name] = [
                    [Candidate(*entry) for entry in level]
                    for level in stored[graded.name]]
            else:
                self.candidates[graded.name] = _candidates(
                    assignment.mistakes_for(graded.name), cases, inputs, compute)
            count = sum(len(level) for level in self.candidates[graded.name])
            log.debug("%s: %d mistake sets prepared", graded.name, count)
        if stored is None:
            mistake_outputs.store(stored_in, self.candidates)


def decode_calls(calls: Iterable[Iterable[Any]]) -> tuple[tuple[Any, ...], ...]:
    return tuple(tuple(decode_value(v) for v in call) for call in calls)


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "array" in value:
        return np.array(value["array"], dtype=value.get("dtype"))
    return value


def compatible(mistakes: tuple[Mistake, ...]) -> bool:
    """Mistakes that can be present together and still be told apart."""
    for first, second in itertools.combinations(mistakes, 2):
        if first.knob_names & second.knob_names:
            return False
        if first.id in second.conflicts or second.id in first.conflicts:
            return False
    return True


def _candidates(
    mistakes: list[Mistake],
    cases: list[Case],
    inputs: dict[str, Any],
    compute: Any,
) -> list[list[Candidate]]:
    value_mistakes = [m for m in mistakes if m.kind == "value"]
    levels: list[list[Candidate]] = []
    for size in range(1, MAX_MISTAKES + 1):
        level = []
        for combination in itertools.combinations(value_mistakes, size):
            if not compatible(combination):
                continue
            for variants in itertools.product(*(m.variants for m in combination)):
                knobs: dict[str, Any] = {}
                for variant in variants:
                    knobs.update(variant)
                predictions = {
                    case.id: expected_from(
                        lambda c=case, k=knobs: compute(k, *inputs[c.id])
                    )
                    for case in cases
                }
                level.append(Candidate(combination, knobs, predictions))
        levels.append(level)
    return levels


def diagnose(
    table: DiagnosisTable,
    name: str,
    run: FunctionRun | None,
    located: LocatedCode,
    failed_imports: dict[str, str],
    failed_definitions: dict[tuple[int, int], str] | None = None,
) -> list[Diagnosis]:
    """All diagnoses of one graded function; an empty list means it passed."""
    failed_definitions = failed_definitions or {}
    assignment = table.assignment
    all_points = assignment.function(name).max_score
    if name in located.syntax_errors:
        return [_syntax_error(name, located, all_points)]
    definition = located.definitions.get(name)
    if definition is None or run is None:
        return [_missing(name, located, all_points)]
    if run.status == "missing":
        # Defined in the notebook, yet absent after running it: the
        # definition itself raised (a default argument, a decorator, ...).
        failure = failed_definitions.get((definition.cell, definition.line))
        return [_engine(
            "function.definition_failed",
            f"Running the definition of `{name}` (cell {definition.cell}, line "
            f"{definition.line}) failed"
            + (f" with {failure}" if failure else "")
            + ", so the function does not exist. Default values and decorators "
            "run when the cell runs: they must not depend on data or stop the "
            "program.",
            table, name, definition.cell, definition.line,
        )]
    if run.status != "ran":
        advice = ("Remove code that writes to files or pipes it did not open."
                  if run.status == "tampered" else
                  "Check for endless loops, very large arrays or code that exits.")
        return [_engine(
            "function.timeout" if run.status == "timeout" else "function.crashed",
            f"`{name}` could not be graded: {run.reason or run.status}. {advice}",
            table, name, definition.cell, definition.line,
        )]

    tree = function_tree(definition)
    outcomes = {outcome.case_id: outcome for outcome in run.outcomes}
    unanswered = [case for case in table.cases[name] if case.id not in outcomes]
    if unanswered or not outcomes:
        # Every case asked must be answered: a report with cases missing
        # (the submission tampered with the probe, or died) never passes.
        return [_engine(
            "function.crashed",
            f"`{name}` could not be graded: no result came back for "
            f"{len(unanswered)} of {len(table.cases[name])} cases.",
            table, name, definition.cell, definition.line,
        )]
    cases = list(table.cases[name])
    context = _Context(table, name, tree, definition.cell, cases, outcomes,
                       located, failed_imports)

    timed_out = [case for case in cases if outcomes[case.id].timed_out]
    if timed_out:
        return [_engine(
            "function.timeout",
            f"`{name}` ran past the time limit on {timed_out[0].description}; "
            "look for a loop that never ends, or for code that starts processes "
            "or fills memory and then waits on them.",
            table, name, definition.cell, definition.line,
        )]
    # The outcomes first: walking the tree costs more, and most pass.
    if tree is not None and _looks_unfinished(context) and has_placeholder(tree):
        return _catalogued(context, "unfinished")

    diagnoses = _catalogued(context, "mutation")
    diagnoses += _value_diagnoses(context)
    if not any(d.kind == "error" for d in diagnoses):
        diagnoses += _type_diagnoses(context)
    return sorted(diagnoses, key=lambda d: d.id)


@dataclass(frozen=True)
class _Context:
    table: DiagnosisTable
    name: str
    tree: FunctionTree | None
    cell: int
    cases: list[Case]
    outcomes: dict[str, CaseOutcome]
    located: LocatedCode
    failed_imports: dict[str, str]

    def line(self, mistake: Mistake) -> int | None:
        if self.tree is None:
            return None
        return find_line(self.tree, mistake.locate)

    def quotable(self, case: Case) -> bool:
        """Whether what the function gave on `case` may be quoted. With
        public evidence only, a hidden case is named but never quoted:
        neither its expected values nor what the function returned or
        raised there, which could carry the hidden inputs."""
        return case.public or not self.table.public_evidence


#: Said instead of the values of a hidden case that may not be quoted.
HIDDEN_VALUES = "the values of hidden cases are not shown"
#: Exception names that may be quoted from a hidden case: Python's own.
#: Any other name was chosen by the submission, which can spell out the
#: hidden inputs in a class name.
BUILTIN_ERRORS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException))


def _looks_unfinished(context: _Context) -> bool:
    for outcome in context.outcomes.values():
        if outcome.error is not None and "NoneType" in outcome.error.message:
            return True
        if outcome.result is not None:
            if outcome.result.kind == "none":
                return True
            if any(item.kind == "none" for item in outcome.result.items):
                return True
    return False


def _catalogued(context: _Context, kind: str) -> list[Diagnosis]:
    found = []
    for mistake in context.table.assignment.mistakes_for(context.name):
        if mistake.kind != kind:
            continue
        if kind == "mutation":
            case = next((c for c in context.cases
                         if context.outcomes[c.id].mutated), None)
            if case is None:
                continue
        else:
            case = context.cases[0] if context.cases else None
        found.append(_explain(context, mistake, case))
    return found


def _value_diagnoses(context: _Context) -> list[Diagnosis]:
    reference = context.table.reference[context.name]
    tolerance = context.table.assignment.tolerance
    if _fits(context, reference):
        return []

    for level in context.table.candidates[context.name]:
        fitting = [c for c in level if _fits(context, c.predictions)]
        if fitting:
            if len({tuple(m.id for m in c.mistakes) for c in fitting}) > 1:
                log.debug("%s: %d mistake sets fit; the first is reported",
                          context.name, len(fitting))
            found = fitting[0]
            return [
                _explain(context, mistake, *_evidence_case(context, found, mistake))
                for mistake in found.mistakes
            ]

    failing = _first_wrong_case(context)
    if failing is None:  # unreachable: the reference did not fit
        return []
    outcome = context.outcomes[failing.id]
    if outcome.error is not None:
        return [_error_diagnosis(context, failing, outcome)]
    difference = first_difference(outcome, reference[failing.id], tolerance)
    shown = (f"it returns {difference.got} where {difference.expected} is expected"
             if context.quotable(failing) else f"its result is wrong ({HIDDEN_VALUES})")
    return [_engine(
        "function.unrecognised",
        f"`{context.name}` gives a wrong result that matches no known mistake. "
        f"On {failing.description} {shown}. Compare your formula with the "
        "one in the instructions, term by term.",
        context.table, context.name, context.cell,
        context.tree.outer.lineno if context.tree else None,
    )]


def _fits(context: _Context, predictions: dict[str, Expected]) -> bool:
    tolerance = context.table.assignment.tolerance
    return all(
        matches(context.outcomes[case.id], predictions[case.id], tolerance)
        for case in context.cases
    )


def _evidence_case(
    context: _Context, found: Candidate, mistake: Mistake
) -> tuple[Case | None, dict[str, Expected]]:
    """The case that shows this one mistake best, and what it is compared with.

    With several mistakes, each is shown against the model with all the
    others present, so that its own effect (say, exactly N times) is visible.
    """
    others = tuple(m.id for m in found.mistakes if m.id != mistake.id)
    baseline = context.table.reference[context.name]
    if others:
        for level in context.table.candidates[context.name]:
            for candidate in level:
                if tuple(m.id for m in candidate.mistakes) == others and all(
                    candidate.knobs.get(k) == found.knobs.get(k)
                    for k in candidate.knobs
                ):
                    baseline = candidate.predictions
                    break
    tolerance = context.table.assignment.tolerance
    differing = [
        case for case in context.cases
        if not matches(context.outcomes[case.id], baseline[case.id], tolerance)
    ]
    if mistake.prefer_nonfinite:
        nonfinite = [case for case in differing
                     if _nonfinite(context.outcomes[case.id])]
        differing = nonfinite + [c for c in differing if c not in nonfinite]
    if context.table.public_evidence and any(case.public for case in differing):
        differing = [case for case in differing if case.public]
    return (differing[0] if differing else _first_wrong_case(context)), baseline


def _nonfinite(outcome: CaseOutcome) -> bool:
    leaves = result_leaves(outcome.result) or ()
    return any(
        leaf.values is not None and not np.all(np.isfinite(leaf.values))
        for leaf in leaves
    )


def _first_wrong_case(context: _Context) -> Case | None:
    reference = context.table.reference[context.name]
    tolerance = context.table.assignment.tolerance
    for case in context.cases:
        if not matches(context.outcomes[case.id], reference[case.id], tolerance):
            return case
    return None


def _type_diagnoses(context: _Context) -> list[Diagnosis]:
    graded = context.table.assignment.function(context.name)
    for case in context.cases:
        outcome = context.outcomes[case.id]
        leaves = result_leaves(outcome.result)
        expected = context.table.reference[context.name][case.id]
        if not leaves or len(leaves) != len(expected.leaves):
            continue
        # A leaf of the wrong shape is a wrong value, already explained; the
        # type is judged only where the structure is the expected one.
        wrong = next((leaf for leaf, want in zip(leaves, expected.leaves, strict=True)
                      if leaf.kind not in graded.accept_kinds
                      and leaf.shape is not None
                      and (leaf.shape == want.shape or want.shape == ())), None)
        if wrong is None:
            continue
        for mistake in context.table.assignment.mistakes_for(context.name):
            if mistake.kind == "type" and wrong.kind in mistake.result_kinds:
                return [_explain(context, mistake, case)]
        quotable = context.quotable(case)
        return [Diagnosis(
            id="function.wrong_type",
            message=(f"`{context.name}` returns a "
                     f"{wrong.type_name if quotable else 'value'}; "
                     f"{graded.result_words} is expected. "
                     f"On {case.description} it returned "
                     f"{describe(wrong) if quotable else HIDDEN_VALUES}."),
            kind="type",
            points=graded.type_points,
            cell=context.cell,
            line=context.tree.outer.lineno if context.tree else None,
        )]
    return []


class _Evidence(dict):  # type: ignore[type-arg]
    """Template values; an unknown placeholder shows as '?' rather than failing."""

    def __missing__(self, key: str) -> str:
        return "?"


def _explain(
    context: _Context,
    mistake: Mistake,
    case: Case | None,
    baseline: dict[str, Expected] | None = None,
) -> Diagnosis:
    if case is not None and not context.quotable(case):
        text = f"It shows on {case.description} ({HIDDEN_VALUES})."
    else:
        text = _evidence_text(context, mistake, case, baseline)
    line = context.line(mistake)
    where = f"See cell {context.cell}, line {line}." if line else ""
    parts = (mistake.what, text, where, mistake.fix)
    message = " ".join(part for part in parts if part)
    return Diagnosis(mistake.id, message, mistake.kind, mistake.points,
                     context.cell, line)


def _evidence_text(context: _Context, mistake: Mistake, case: Case | None,
                   baseline: dict[str, Expected] | None) -> str:
    """The mistake's evidence sentence, filled in from `case`."""
    evidence = _Evidence()
    if case is not None:
        evidence.update(case.facts)
        evidence["case"] = case.description
        outcome = context.outcomes[case.id]
        reference = (baseline or context.table.reference[context.name])[case.id]
        difference = first_difference(
            outcome, reference, context.table.assignment.tolerance
        )
        evidence.update(_difference_facts(difference, outcome))
    text = mistake.evidence.format_map(evidence) if mistake.evidence else ""
    if text and baseline is not None and baseline is not context.table.reference[
            context.name]:
        # With several mistakes, "expected" is the result with only this one
        # fixed; say so, or the numbers look wrong.
        text += " (Compared with your code with only this mistake fixed.)"
    return text


def _difference_facts(difference: Difference, outcome: CaseOutcome) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "got": difference.got,
        "expected": difference.expected,
        "got_shape": difference.got_shape,
        "expected_shape": difference.expected_shape,
        "got_type": difference.got_type,
        "ratio": _ratio_text(difference.ratio),
    }
    if outcome.error is not None:
        facts["error"] = f"{outcome.error.type}: {outcome.error.message}"
        facts["got"] = f"an error ({outcome.error.type}: {outcome.error.message})"
    return facts


def _ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "?"
    if abs(ratio - round(ratio)) < 1e-3:
        return str(int(round(ratio)))
    return f"{ratio:.3g}"


NAME_ERROR = re.compile(r"name '(\w+)' is not defined")


def _error_diagnosis(context: _Context, case: Case, outcome: CaseOutcome) -> Diagnosis:
    """Explain an exception the student's code raised, by its kind."""
    error = outcome.error
    assert error is not None  # the caller checked
    if not context.quotable(case):
        # Where it raised is the submission's to claim too (a code object
        # names any cell and line): only the function's own cell is said.
        kind = error.type if error.type in BUILTIN_ERRORS else "an exception"
        return _engine(
            "function.raised",
            f"`{context.name}` raised {kind} on {case.description} "
            f"({HIDDEN_VALUES}, nor their messages). Check that the function "
            "handles every shape and value the instructions allow.",
            context.table, context.name, context.cell, None,
        )
    where_cell = error.cell or context.cell
    line = error.line if error.cell == context.cell or error.cell else None
    # NumPy ends some messages with a space ("... shapes (2,) (4,3) ").
    shown = f"{error.type}: {error.message.strip()}"
    name_match = NAME_ERROR.search(error.message)
    located = context.located

    if name_match and error.type == "NameError":
        name = name_match.group(1)
        use_line = find_name(context.tree, name) if context.tree else None
        if name in located.globals_not_run:
            setting = located.globals_not_run[name]
            return _engine(
                "function.uses_global",
                f"`{context.name}` reads the global variable `{name}`, which only "
                f"cell {setting.cell} (line {setting.line}) sets by loading data "
                "or training; the grader does not run such cells, and graded "
                "functions must work from their arguments alone. Compute what "
                f"you need from the function's parameters instead of `{name}`.",
                context.table, context.name, context.cell, use_line or line,
                say_where=True,
            )
        if name in context.failed_imports:
            return _engine(
                "function.import_failed",
                f"`{context.name}` uses `{name}`, but importing it failed on the "
                f"grading machine ({context.failed_imports[name]}). Use only the "
                "libraries the assignment provides (numpy and the Keras "
                "backend).",
                context.table, context.name, context.cell, use_line or line,
                say_where=True,
            )
        return _engine(
            "function.name_error",
            f"`{context.name}` uses `{name}`, which is never defined or imported "
            f"in the notebook ({shown}). Import it (for example in the first "
            "code cell) or define it before it is used.",
            context.table, context.name, where_cell, use_line or line,
            say_where=True,
        )
    if error.type in ("ModuleNotFoundError", "ImportError"):
        return _engine(
            "function.import_failed",
            f"`{context.name}` imports a module the grading machine does not "
            f"have ({shown}). Use only the libraries the assignment provides.",
            context.table, context.name, where_cell, line,
            say_where=True,
        )
    if error.type == "AttributeError" and re.search(
        r"'numpy\.\w+' object has no attribute '(numpy|eval)'", error.message
    ):
        return _engine(
            "function.numpy_method_on_numpy",
            f"`{context.name}` calls .numpy() or .eval() on a value that is "
            f"already a NumPy value ({shown}, on {case.description}). Those "
            "methods belong to tensors; a NumPy value needs no conversion.",
            context.table, context.name, where_cell, line,
            say_where=True,
        )
    if "could not be broadcast" in error.message:
        return _engine(
            "function.broadcast_error",
            f"`{context.name}` combines arrays whose shapes do not fit together "
            f"({shown}, on {case.description}). Check which axis each "
            "operation reduces and the shapes you index.",
            context.table, context.name, where_cell, line,
            say_where=True,
        )
    if (error.type == "AxisError"
            or "out of bounds for array of dimension" in error.message):
        return _engine(
            "function.axis_error",
            f"`{context.name}` asks for an axis the array does not have "
            f"({shown}, on {case.description}); a single column is "
            "one-dimensional, so it has only axis 0.",
            context.table, context.name, where_cell, line,
            say_where=True,
        )
    return _engine(
        "function.raised",
        f"`{context.name}` raised {shown} on {case.description}. Read the "
        "message" + (" and the line where it was raised." if line else "."),
        context.table, context.name, where_cell, line,
        say_where=True,
    )


def _syntax_error(name: str, located: LocatedCode, points: float) -> Diagnosis:
    problem = located.syntax_errors[name]
    text = f": `{problem.text.strip()}`" if problem.text.strip() else ""
    return Diagnosis(
        id="function.syntax_error",
        message=(f"The cell defining `{name}` (cell {problem.cell}) has a syntax "
                 f"error at line {problem.line}: {problem.message}{text}. "
                 "Python cannot run the cell, so the function does not exist. "
                 "Fix the line and run the cell again."),
        kind="error",
        points=points,
        cell=problem.cell,
        line=problem.line,
    )


def _missing(name: str, located: LocatedCode, points: float) -> Diagnosis:
    close = located.suggestions.get(name, ())
    hint = f" Did you mean to name `{close[0]}` `{name}`?" if close else ""
    marked = located.markers.get(name)
    where = (f" The cell marked GRADED FUNCTION: {name} is cell {marked}."
             if marked else "")
    return Diagnosis(
        id="function.missing",
        message=(f"No function named `{name}` is defined at the top level of any "
                 f"code cell.{hint}{where} Keep the function's name and "
                 "signature as given in the assignment."),
        kind="error",
        points=points,
        cell=marked,
        line=None,
    )


def _engine(
    diagnosis_id: str,
    message: str,
    table: DiagnosisTable,
    name: str,
    cell: int | None,
    line: int | None,
    say_where: bool = False,
) -> Diagnosis:
    points = table.assignment.function(name).max_score
    if say_where and cell is not None and line is not None:
        message += f" See cell {cell}, line {line}."
    return Diagnosis(diagnosis_id, message, "error", points, cell, line)


def failed_snippets(statuses: Iterable[Any]) -> dict[tuple[int, int], str]:
    """(cell, line) of each snippet that raised, with the error shown."""
    return {(s.cell, s.line): f"{s.error_type}: {s.error_message}"
            for s in statuses if not s.ok and s.line is not None}


def failed_import_names(
    statuses: Iterable[Any], located: LocatedCode
) -> dict[str, str]:
    """Names bound by import snippets that failed, with the error shown."""
    failures = {(s.cell, s.line): s for s in statuses if not s.ok}
    found = {}
    for snippet in located.snippets:
        status = failures.get((snippet.cell, snippet.line))
        if snippet.kind == "import" and status is not None:
            for name in snippet.binds:
                found[name] = f"{status.error_type}: {status.error_message}"
    return found


__all__ = ["Diagnosis", "DiagnosisTable", "diagnose", "failed_import_names",
           "failed_snippets"]
