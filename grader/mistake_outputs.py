"""What the reference outputs under every mistake set, kept on disk.

Computing the outputs of every catalogued mistake and combination takes
seconds per run (about 14,000 model calls for the chest X-ray assignment),
while a batch of a thousand notebooks is graded in about ten. So the outputs
are stored once per assignment version in the user's cache folder, as JSON
(plain data: nothing is unpickled), and later runs read them in a few
milliseconds.

The key covers everything the outputs depend on: the assignment's files
(its digest), whether only public cases are used, and the source of the
modules that compute and compare them. A file that cannot be read or does
not fit is ignored and written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignment import Mistake
from grader.comparing import Expected

log = logging.getLogger(__name__)

#: Set to a folder to keep the outputs there, or to "off" to never keep them.
CACHE_VARIABLE = "GRADER_CACHE_DIR"
#: Modules whose code decides the stored outputs.
_DEPENDS_ON = ("comparing.py", "diagnosing.py", "mistake_outputs.py")


def cache_folder() -> Path | None:
    """Where the outputs are kept; None when keeping them is turned off.

    The files hold the reference's outputs on the hidden cases: the sandbox
    hides this folder like the reference itself.
    """
    folder = os.environ.get(CACHE_VARIABLE, "")
    if folder == "off":
        return None
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "grader")
    return Path(folder)


def cache_file(assignment_digest: str, public_only: bool) -> Path | None:
    folder = cache_folder()
    if folder is None:
        return None
    code = hashlib.sha256()
    for name in _DEPENDS_ON:
        code.update((Path(__file__).parent / name).read_bytes())
    scope = "public" if public_only else "all"
    return folder / f"mistakes-{assignment_digest}-{scope}-{code.hexdigest()[:12]}.json"


def load(path: Path | None, mistakes: dict[str, Mistake]
         ) -> dict[str, list[list[Any]]] | None:
    """Stored candidates by function name, or None when there are none to use.

    Each candidate comes back as (mistakes, knobs, predictions), ready for
    `diagnosing.Candidate`.
    """
    if path is None or not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            name: [[(tuple(mistakes[i] for i in entry["mistakes"]), entry["knobs"],
                     {case: _expected(e) for case, e in entry["predictions"].items()})
                    for entry in level]
                   for level in levels]
            for name, levels in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.info("stored mistake outputs in %s are unusable (%s); computing them",
                 path, type(exc).__name__)
        return None


def store(path: Path | None, candidates: dict[str, list[list[Any]]]) -> None:
    """Write atomically: a run that reads at the same time sees all or none."""
    if path is None:
        return
    plain = {
        name: [[{"mistakes": [m.id for m in c.mistakes], "knobs": c.knobs,
                 "predictions": {case: _plain(e) for case, e in c.predictions.items()}}
                for c in level]
               for level in levels]
        for name, levels in candidates.items()
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         suffix=".part", encoding="utf-8") as part:
            json.dump(plain, part)
        os.replace(part.name, path)
    except OSError as exc:
        log.info("could not keep the mistake outputs in %s (%s)", path, exc.strerror)


def _plain(expected: Expected) -> dict[str, Any]:
    return {"error": expected.error, "several": expected.several,
            "leaves": [{"shape": list(leaf.shape), "values": leaf.ravel().tolist()}
                       for leaf in expected.leaves]}


def _expected(raw: dict[str, Any]) -> Expected:
    leaves = tuple(np.array(leaf["values"], dtype=np.float64).reshape(leaf["shape"])
                   for leaf in raw["leaves"])
    return Expected(error=raw["error"], leaves=leaves, several=bool(raw["several"]))
