"""Stage 7: turn diagnoses into points.

Each graded function's points are split between its value and its type
(assignment.toml). Value-kind diagnoses (wrong values, arguments changed in
place) take from the value points, type diagnoses from the type points; a
function that could not be judged (missing, syntax error, raised, timed out,
unfinished) scores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grader.assignment import GradedFunction
from grader.diagnosing import Diagnosis

VALUE_KINDS = ("value", "mutation")


@dataclass(frozen=True)
class FunctionScore:
    name: str
    score: float
    max_score: float
    diagnoses: tuple[Diagnosis, ...]

    @property
    def passed(self) -> bool:
        return not self.diagnoses

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "score": self.score,
            "max_score": self.max_score,
            "diagnoses": [d.to_dict() for d in self.diagnoses],
        }

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> FunctionScore:
        return cls(name, float(raw["score"]), float(raw["max_score"]),
                   tuple(Diagnosis.from_dict(d) for d in raw.get("diagnoses", [])))


def score_function(graded: GradedFunction, diagnoses: list[Diagnosis]) -> FunctionScore:
    if any(d.kind in ("error", "unfinished") for d in diagnoses):
        score = 0.0
    else:
        value_lost = sum(d.points for d in diagnoses if d.kind in VALUE_KINDS)
        type_lost = sum(d.points for d in diagnoses if d.kind == "type")
        score = (max(0.0, graded.value_points - value_lost)
                 + max(0.0, graded.type_points - type_lost))
    return FunctionScore(graded.name, round(score, 2), graded.max_score,
                         tuple(diagnoses))
