"""Stage 2: find the graded functions and what they need to run.

Works on the code cells alone, without running anything. IPython syntax is
turned into Python line by line (line numbers are kept, so every line we
report is the line the student sees). The result lists the snippets the
default mode runs: the imports the graded functions use, their definitions
and the helpers they call, in notebook order. Globals that only a
data-loading or training cell would set are recorded, not run.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import functools
import logging
import re
import symtable
from collections.abc import Iterable
from dataclasses import dataclass, field

from IPython.core.inputtransformer2 import TransformerManager

from grader.reading import Notebook

log = logging.getLogger(__name__)

#: Cell magics whose body is ordinary Python that runs as written.
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
GRADED_MARKER = re.compile(r"^\s*#\s*GRADED FUNCTION:\s*(\w+)", re.MULTILINE)
UNIQUE_MARKER = re.compile(r"^\s*#\s*(UNQ_C\d+)", re.MULTILINE)
#: Lines that may hold IPython syntax: escapes, magics, help requests.
IPYTHON_SYNTAX = re.compile(r"^\s*[%!?]|=\s*[%!]|\?\s*$")
BUILTIN_NAMES = frozenset(dir(builtins)) | {"get_ipython", "display", "__name__"}


@dataclass(frozen=True)
class Snippet:
    """A top-level statement the default mode runs, with its place."""

    cell: int
    line: int
    #: Python source padded with blank lines so that line numbers in
    #: tracebacks are the lines of the cell.
    source: str
    kind: str  # "import", "definition" or "assignment"
    binds: tuple[str, ...]


@dataclass(frozen=True)
class Definition:
    """The definition of a graded function that counts (the last one)."""

    name: str
    cell: int
    line: int
    #: The cell's Python source (magics turned into calls, lines kept).
    cell_source: str


@dataclass(frozen=True)
class SyntaxProblem:
    cell: int
    line: int | None
    message: str
    text: str


@dataclass(frozen=True)
class GlobalSetting:
    """A global that a graded function reads and only a skipped cell sets."""

    name: str
    cell: int
    line: int


@dataclass(frozen=True)
class RunnableCell:
    """A code cell for the full mode: Python source, lines as in the cell."""

    number: int
    source: str

    def statements(self) -> list[Snippet]:
        """The cell's top-level statements, each run on its own in the full
        mode, so that one failing import does not skip the rest of the cell.
        A cell that does not parse stays whole (and fails as it would)."""
        try:
            module = parse_cell(self.source)
        except SyntaxError:
            return [Snippet(self.number, 1, self.source, "cell", ())]
        lines = self.source.splitlines(keepends=True)
        snippets = []
        for node in module.body:
            first = _first_line(node)
            text = "".join(lines[first - 1 : node.end_lineno]).rstrip("\n")
            snippets.append(Snippet(self.number, first,
                                    "\n" * (first - 1) + text + "\n", "cell", ()))
        return snippets


@dataclass(frozen=True)
class LocatedCode:
    definitions: dict[str, Definition]
    syntax_errors: dict[str, SyntaxProblem]
    #: Close matches for graded functions that are not defined anywhere.
    suggestions: dict[str, tuple[str, ...]]
    snippets: tuple[Snippet, ...]
    globals_not_run: dict[str, GlobalSetting]
    cells: tuple[RunnableCell, ...]
    markers: dict[str, int] = field(default_factory=dict)


@dataclass
class _Binding:
    name: str
    cell: int
    node: ast.stmt
    kind: str  # "import", "star_import", "definition", "assignment", "other"
    cell_source: str = ""


def locate(notebook: Notebook, function_names: Iterable[str]) -> LocatedCode:
    """Find each graded function and the code it needs."""
    names = list(function_names)
    parsed: list[tuple[int, str, ast.Module]] = []
    broken: list[tuple[int, str, SyntaxError]] = []
    runnable = []
    markers: dict[str, int] = {}

    for cell in notebook.code_cells:
        for marked in GRADED_MARKER.findall(cell.source):
            markers[marked] = cell.number
        source = python_source(cell.source)
        if source is None:
            log.debug("cell %d: a non-Python cell magic, skipped", cell.number)
            continue
        runnable.append(RunnableCell(cell.number, source))
        try:
            parsed.append((cell.number, source, parse_cell(source)))
        except SyntaxError as exc:
            broken.append((cell.number, source, exc))
        except (RecursionError, MemoryError, ValueError) as exc:
            # Python itself cannot compile it (nesting too deep, NUL bytes).
            problem = SyntaxError(
                f"Python cannot compile this cell ({type(exc).__name__})")
            problem.lineno = 1
            broken.append((cell.number, source, problem))

    bindings = _top_level_bindings(parsed)
    definitions = _graded_definitions(names, parsed)
    syntax_errors = _syntax_errors_hiding(names, parsed, broken)
    for name in syntax_errors:
        definitions.pop(name, None)

    snippets, globals_not_run = _needed_snippets(definitions, bindings)
    defined = {b.name for b in bindings if b.kind == "definition"}
    suggestions = {
        name: tuple(difflib.get_close_matches(name, sorted(defined - {name}), n=3,
                                              cutoff=0.6))
        for name in names
        if name not in definitions and name not in syntax_errors
    }
    return LocatedCode(
        definitions=definitions,
        syntax_errors=syntax_errors,
        suggestions=suggestions,
        snippets=tuple(snippets),
        globals_not_run=globals_not_run,
        cells=tuple(runnable),
        markers=markers,
    )


#: Distinct cell sources remembered per process. A batch's notebooks share
#: most cells (the course's own), which are then parsed once per batch.
PARSED_CELLS_KEPT = 256


@functools.lru_cache(maxsize=PARSED_CELLS_KEPT)
def parse_cell(source: str) -> ast.Module:
    """The cell's syntax tree, shared by every notebook with this cell:
    nothing may change it."""
    return ast.parse(source)


@functools.lru_cache(maxsize=PARSED_CELLS_KEPT)
def python_source(cell_source: str) -> str | None:
    """The cell as Python with the same line numbers, or None if not Python.

    `%%time` and similar cell magics lose their first line and run their
    body; line magics and shell escapes become `get_ipython()` calls on the
    same line, as IPython itself would run them.
    """
    lines = cell_source.splitlines(keepends=True)
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in PYTHON_CELL_MAGICS:
            return None
        lines[first] = "\n"
    lines = [_without_install(line) for line in lines]
    if not any(IPYTHON_SYNTAX.search(line) for line in lines):
        # Plain Python (most cells): IPython's tokenizer would change nothing.
        return "".join(lines)
    manager = TransformerManager()
    # Only the token-level transforms: the clean-up ones drop leading blank
    # lines and indentation, which would shift every reported line.
    manager.cleanup_transforms = []
    manager.line_transforms = []
    try:
        return manager.transform_cell("".join(lines))
    except Exception:  # IPython's tokenizer gives up on some broken cells
        return "".join(lines)


#: Shell escapes and magics that install packages: never run while grading,
#: since they would change the grading machine for every later submission.
INSTALL_COMMAND = re.compile(r"^(\s*)[!%]\s*(pip|conda|mamba|apt|apt-get)\b")


def _without_install(line: str) -> str:
    match = INSTALL_COMMAND.match(line)
    if match is None:
        return line
    log.debug("package installation skipped: %s", line.strip())
    return f"{match.group(1)}pass  # grader: package installation skipped\n"


def _top_level_bindings(parsed: list[tuple[int, str, ast.Module]]) -> list[_Binding]:
    bindings = []
    for cell, source, module in parsed:
        for node in _top_level_statements(module):
            for binding in _bindings_of(cell, node):
                binding.cell_source = source
                bindings.append(binding)
    return bindings


def _top_level_statements(module: ast.Module) -> Iterable[ast.stmt]:
    for node in module.body:
        yield node
        # `try: import x except ImportError: ...` is how notebooks guard
        # optional imports; its imports count as top level.
        if isinstance(node, ast.Try):
            for inner in node.body:
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


def _bindings_of(cell: int, node: ast.stmt) -> list[_Binding]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        found = []
        for alias in node.names:
            if alias.name == "*":
                found.append(_Binding("*", cell, node, "star_import"))
            else:
                bound = alias.asname or alias.name.split(".")[0]
                found.append(_Binding(bound, cell, _single_import(node, alias),
                                      "import"))
        return found
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [_Binding(node.name, cell, node, "definition")]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        assigns = isinstance(node, (ast.Assign, ast.AnnAssign))
        kind = "assignment" if assigns else "other"
        return [
            _Binding(name, cell, node, kind)
            for target in targets
            for name in _target_names(target)
        ]
    if isinstance(node, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
        names: list[str] = []
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                names.append(child.id)
        return [_Binding(name, cell, node, "other") for name in names]
    return []


def _single_import(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> ast.stmt:
    """One statement per imported name, so one failure cannot stop the rest."""
    if isinstance(node, ast.Import):
        single: ast.stmt = ast.Import(names=[alias])
    else:
        single = ast.ImportFrom(module=node.module, names=[alias], level=node.level)
    return ast.copy_location(single, node)


def _target_names(target: ast.expr) -> list[str]:
    return [
        child.id
        for child in ast.walk(target)
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
    ]


def _graded_definitions(
    names: list[str], parsed: list[tuple[int, str, ast.Module]]
) -> dict[str, Definition]:
    found: dict[str, Definition] = {}
    for cell, source, module in parsed:
        for node in module.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name in names:
                    # Later definitions replace earlier ones, as when the
                    # notebook runs top to bottom.
                    found[node.name] = Definition(node.name, cell, node.lineno, source)
            elif _defines_by_assignment(node):
                target = node.targets[0].id  # type: ignore[attr-defined]
                if target in names:
                    found[target] = Definition(target, cell, node.lineno, source)
    return found


def _defines_by_assignment(node: ast.stmt) -> bool:
    """`f = lambda ...` or `f = other_function`: a definition by assignment."""
    return (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, (ast.Lambda, ast.Name, ast.Attribute)))


def _syntax_errors_hiding(
    names: list[str],
    parsed: list[tuple[int, str, ast.Module]],
    broken: list[tuple[int, str, SyntaxError]],
) -> dict[str, SyntaxProblem]:
    """Graded functions whose last definition is in a cell that does not parse."""
    last_good = {}
    for cell, _source, module in parsed:
        for node in module.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                last_good[node.name] = cell

    problems = {}
    for cell, source, error in broken:
        for name in names:
            if re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", source, re.MULTILINE):
                if cell >= last_good.get(name, 0):
                    problems[name] = SyntaxProblem(
                        cell=cell,
                        line=error.lineno,
                        message=error.msg,
                        text=(error.text or "").rstrip("\n"),
                    )
    return problems


def _needed_snippets(
    definitions: dict[str, Definition], bindings: list[_Binding]
) -> tuple[list[Snippet], dict[str, GlobalSetting]]:
    """The closure of what the graded functions refer to, in notebook order."""
    latest: dict[str, _Binding] = {}
    for binding in bindings:
        latest[binding.name] = binding
    # Keyed by cell too: two cells with the same source share one tree.
    chosen: dict[tuple[int, int], tuple[_Binding, str]] = {}
    globals_not_run: dict[str, GlobalSetting] = {}
    unresolved = False

    pending = [
        _binding_for_definition(bindings, definition)
        for definition in definitions.values()
    ]
    seen_names: set[str] = set()
    while pending:
        binding = pending.pop()
        if (binding.cell, id(binding.node)) in chosen:
            continue
        chosen[binding.cell, id(binding.node)] = (binding, binding.kind)
        for name in sorted(_names_read(binding) - seen_names):
            seen_names.add(name)
            source = latest.get(name)
            if source is None:
                unresolved = unresolved or name not in BUILTIN_NAMES
            elif source.kind in ("definition", "import") or (
                source.kind == "assignment" and _is_plain_value(source.node)
            ):
                pending.append(source)
            else:
                globals_not_run[name] = GlobalSetting(
                    name, source.cell, source.node.lineno
                )

    if unresolved:
        # A name nobody binds may come from `from module import *`.
        for binding in bindings:
            if binding.kind == "star_import":
                chosen[binding.cell, id(binding.node)] = (binding, "import")

    snippets = [
        _snippet(binding, kind)
        for binding, kind in sorted(
            chosen.values(), key=lambda item: (item[0].cell, item[0].node.lineno)
        )
    ]
    return snippets, globals_not_run


def _binding_for_definition(
    bindings: list[_Binding], definition: Definition
) -> _Binding:
    for binding in bindings:
        if (
            binding.kind in ("definition", "assignment")
            and binding.name == definition.name
            and binding.cell == definition.cell
            and binding.node.lineno == definition.line
        ):
            return binding
    raise LookupError(definition.name)  # _graded_definitions guarantees it


def _names_read(binding: _Binding) -> set[str]:
    """Global names a top-level statement reads, nested scopes included."""
    node = binding.node
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return set()
    try:
        table = symtable.symtable(_statement_text(binding), "<snippet>", "exec")
    except (SyntaxError, RecursionError, ValueError):
        return set()
    names: set[str] = set()
    stack = [table]
    while stack:
        scope = stack.pop()
        for symbol in scope.get_symbols():
            referenced = symbol.is_referenced()
            if scope.get_type() == "module":
                if referenced and not symbol.is_assigned() and not symbol.is_imported():
                    names.add(symbol.get_name())
            elif referenced and symbol.is_global():
                names.add(symbol.get_name())
        stack.extend(scope.get_children())
    return names


def _statement_text(binding: _Binding) -> str:
    """The statement as written when it has its lines to itself (cheaper
    than `ast.unparse`, which the other cases fall back to)."""
    node = binding.node
    first = _first_line(node)
    lines = binding.cell_source.splitlines()
    last = node.end_lineno or node.lineno
    if node.col_offset == 0 and last <= len(lines):
        # Offsets count UTF-8 bytes, not characters.
        rest = lines[last - 1].encode()[node.end_col_offset or 0:].decode(
            errors="replace").strip()
        if not rest or rest.startswith("#"):
            return "\n".join(lines[first - 1 : last]) + "\n"
    return ast.unparse(node)


def _is_plain_value(node: ast.stmt) -> bool:
    """An assignment safe to run anywhere: no calls, so no data loading."""
    value = getattr(node, "value", None)
    if value is None:
        return False
    if isinstance(value, ast.Lambda):
        return True  # defining a lambda runs none of its body
    unsafe = (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)
    return not any(isinstance(child, unsafe) for child in ast.walk(value))


def _first_line(node: ast.stmt) -> int:
    """Where a statement starts as written: at its first decorator, if any."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _snippet(binding: _Binding, kind: str) -> Snippet:
    node = binding.node
    first_line = _first_line(node)
    if kind == "definition" or kind == "assignment":
        # The statement's own lines, decorators included, as written.
        lines = binding.cell_source.splitlines(keepends=True)
        text = "".join(lines[first_line - 1 : node.end_lineno])
    else:
        text = ast.unparse(node)
    binds = (binding.name,) if binding.name != "*" else ()
    return Snippet(
        cell=binding.cell,
        line=first_line,
        source="\n" * (first_line - 1) + text + "\n",
        kind=kind if kind != "star_import" else "import",
        binds=binds,
    )

