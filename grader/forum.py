"""A mentor's forum reply: find the code in a post, repair it, grade it.

Forums damage pasted code in a few known ways; each repair below is a rule
about that damage, not about any one post, and every repair made is listed
so the mentor can judge it:

* HTML entities (`&lt;`, `&#39;`) and non-breaking spaces;
* typographic quotes (‘ ’ “ ”) where Python needs straight ones;
* indentation lost (code pasted flat), rebuilt from the block structure;
* multiplication signs eaten by Markdown: two `*` around a span turn it into
  italics and both vanish, even across a line break. What is left are two
  operands side by side (`w[c]y`), or a line that ends on an operand inside
  open brackets followed by a line that starts with one; a `*` goes back in
  each such gap.

A fragment (a function body) is placed inside the graded function it fits,
using the skeleton the assignment gives in `assignment.toml`.
"""

from __future__ import annotations

import html
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from grader.assignment import Assignment
from grader.errors import UsageError
from grader.reading import CodeCell, Notebook

FENCE = re.compile(r"^```[\w+-]*\s*\n(.*?)^```", re.MULTILINE | re.DOTALL)
PRE = re.compile(r"<pre[^>]*>(?:\s*<code[^>]*>)?(.*?)(?:</code>\s*)?</pre>",
                 re.DOTALL | re.IGNORECASE)
TAG = re.compile(r"<[^>]+>")
QUOTES = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'}
#: Lines that look like Python rather than prose.
CODE_LINE = re.compile(
    r"^\s*(def |for |while |if |elif |else:|return\b|import |from \w+ import|"
    r"#|[\w.\[\]:, ]+\s*(=|\+=|-=|\*=|/=)|\w+\(|\(|\))")
BLOCK_OPENER = re.compile(r":\s*(#.*)?$")
DEDENT_KEYWORDS = ("else", "elif", "except", "finally")
#: An operand that ends right where the next one starts: `]x`, `)x`, `](`...
JUXTAPOSED = re.compile(r"([\])])(?=[A-Za-z_(])")
KEYWORDS_AFTER_OPERAND = ("for", "if", "else", "and", "or", "in", "is", "not")


@dataclass
class ForumCode:
    source: str
    function: str | None
    repairs: list[str] = field(default_factory=list)


def extract_code(post: str) -> tuple[str, list[str]]:
    """The code in a post (fenced, <pre>, indented or bare lines)."""
    repairs: list[str] = []
    blocks = FENCE.findall(post)
    if blocks:
        return "\n".join(blocks), repairs
    blocks = PRE.findall(post)
    if blocks:
        code = "\n".join(TAG.sub("", block) for block in blocks)
        repairs.append("took the code from the post's <pre> block")
        return code, repairs
    lines = post.expandtabs(4).splitlines()
    indented = _indented_blocks(lines)
    if indented:
        return "\n\n".join(indented), repairs
    code_lines = [line for line in lines if CODE_LINE.match(line)
                  and not line.strip().endswith((".", "?", "!"))]
    repairs.append("took the lines that look like code from the post's text")
    # Indented alike (a quote, a list item): the indentation is the post's.
    return textwrap.dedent("\n".join(code_lines)), repairs


def _indented_blocks(lines: list[str]) -> list[str]:
    """Markdown's indented code blocks: runs of lines indented by four
    spaces or more after a blank line, kept where a line looks like code
    (a continuation line of an expression need not)."""
    blocks, run = [], []
    previous_blank = True
    for line in [*lines, ""]:
        if line.startswith("    ") and (run or previous_blank):
            run.append(line[4:])
        elif not line.strip() and run:
            run.append("")
        else:
            if any(CODE_LINE.match(text) for text in run):
                blocks.append("\n".join(run).strip("\n"))
            run = []
        previous_blank = not line.strip()
    if any(CODE_LINE.match(text) for text in run):  # the post ends in code
        blocks.append("\n".join(run).strip("\n"))
    return blocks


def repair(code: str) -> tuple[str, list[str]]:
    repairs: list[str] = []
    unescaped = html.unescape(code)
    if unescaped != code:
        repairs.append("decoded HTML entities (such as &#39; and &amp;)")
        code = unescaped
    if "\u00a0" in code:
        repairs.append("replaced non-breaking spaces with spaces")
        code = code.replace("\u00a0", " ")
    if any(quote in code for quote in QUOTES):
        repairs.append("replaced typographic quotes with straight quotes")
        for curly, straight in QUOTES.items():
            code = code.replace(curly, straight)
    code = "\n".join(line.rstrip() for line in code.splitlines()).strip("\n")
    code, eaten = _restore_asterisks(code)
    repairs.extend(eaten)
    if _is_flat(code):
        code = _reindent(code)
        repairs.append("rebuilt the indentation, which the forum had removed")
    return code, repairs


def _restore_asterisks(code: str) -> tuple[str, list[str]]:
    """Put back `*` where Markdown emphasis swallowed them (see module doc)."""
    repairs: list[str] = []
    lines = code.splitlines()
    out: list[str] = []
    depth = 0
    for line in lines:
        fixed = _fill_gaps(line, repairs)
        if out and depth > 0 and _ends_with_operand(out[-1]) and \
                _starts_with_operand(fixed):
            repairs.append(f"joined a line broken inside brackets and restored the "
                           f"'*' lost at the break: {out[-1].strip()} * "
                           f"{fixed.strip()}")
            out[-1] = out[-1].rstrip() + " * " + fixed.strip()
        else:
            out.append(fixed)
        depth = max(0, _bracket_depth("\n".join(out)))
    return "\n".join(out), repairs


def _fill_gaps(line: str, repairs: list[str]) -> str:
    code, _, comment = line.partition("#") if "#" in line and "'" not in line \
        and '"' not in line else (line, "", "")

    def insert(match: re.Match[str]) -> str:
        following = code[match.end():]
        word = re.match(r"[A-Za-z_]\w*", following)
        if word and word.group(0) in KEYWORDS_AFTER_OPERAND:
            return match.group(0)
        if match.group(1) == "]" and following.startswith("("):
            return match.group(0)  # a call on an item: legal, leave it
        if match.group(1) == ")" and following.startswith("("):
            return match.group(0)
        return match.group(1) + " * "

    fixed = JUXTAPOSED.sub(insert, code)
    if fixed != code:
        repairs.append(f"restored a '*' that Markdown italics had removed: "
                       f"{fixed.strip()}")
    return fixed + ("#" + comment if comment else "")


def _bracket_depth(text: str) -> int:
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
    return depth


def _ends_with_operand(line: str) -> bool:
    return bool(re.search(r"[\w\])]\s*$", line)) and not line.rstrip().endswith(":")


#: Words that cannot follow a `*`: a line that starts with one starts a
#: statement (or continues an expression another way), so an unclosed
#: bracket above it is the poster's own, not a lost `*`.
NOT_OPERANDS = re.compile(
    r"\s*(and|or|if|else|elif|for|in|is|not|return|def|class|while|with|try|"
    r"except|finally|import|from|raise|pass|break|continue|del|global|"
    r"nonlocal|assert|yield|lambda)\b")


def _starts_with_operand(line: str) -> bool:
    return bool(re.match(r"\s*[\w(\[]", line)) and not NOT_OPERANDS.match(line)


def _is_flat(code: str) -> bool:
    lines = [line for line in code.splitlines() if line.strip()]
    opens_block = any(BLOCK_OPENER.search(line) for line in lines[:-1])
    return opens_block and not any(line.startswith((" ", "\t")) for line in lines)


def _reindent(code: str) -> str:
    """Indentation from structure: a block runs until `return` or a keyword
    that continues its opener (else, elif, except, finally)."""
    out = []
    level = 0
    stack: list[int] = []
    for raw in code.splitlines():
        line = raw.strip()
        if not line:
            out.append("")
            continue
        first = re.match(r"\w+", line)
        word = first.group(0) if first else ""
        if word in DEDENT_KEYWORDS and stack:
            level = stack.pop()
        elif word == "return" and stack:
            level = stack[0]
            stack.clear()
        elif word == "def":
            level, stack = 0, []
        out.append("    " * level + line)
        if BLOCK_OPENER.search(line) and not line.startswith("#"):
            stack.append(level)
            level += 1
    return "\n".join(out)


def place(code: str, assignment: Assignment) -> tuple[str, str | None, list[str]]:
    """Wrap a fragment in the skeleton of the graded function it fits."""
    names = [f.name for f in assignment.functions]
    for name in names:
        if re.search(rf"^\s*def\s+{name}\s*\(", code, re.MULTILINE):
            return code, name, []
    best, score = None, 0
    for graded in assignment.functions:
        if not graded.fragment_skeleton:
            continue
        used = sum(1 for word in set(re.findall(r"\w+", code))
                   if word in graded.fragment_names)
        if used > score:
            best, score = graded, used
    if best is None:
        return code, None, []
    indent = re.search(r"^( *)\{body\}", best.fragment_skeleton, re.MULTILINE)
    pad = indent.group(1) if indent else "    "
    body = "\n".join((pad + line) if line.strip() else line
                     for line in code.splitlines())
    placed = best.fragment_skeleton.replace(pad + "{body}", body)
    return placed, best.name, [f"placed the fragment inside {best.name}, "
                               "as given by the assignment's skeleton"]


def forum_notebook(
    post: str, assignment: Assignment, path: Path
) -> tuple[Notebook, ForumCode]:
    """The post's code as a notebook to grade; UsageError when it has none
    (a reply about missing functions would only confuse the student)."""
    code, repairs = extract_code(post)
    if not code.strip():
        raise UsageError(
            f"{path}: no code found in the post; ask for the function's code, "
            "pasted between lines of three backticks (```)")
    code, more = repair(code)
    repairs += more
    placed, function, placing = place(code, assignment)
    repairs += placing
    source = (assignment.forum_imports + "\n\n" + placed) if assignment.forum_imports \
        else placed
    notebook = Notebook(path, 4, (CodeCell(1, source),), "")
    return notebook, ForumCode(source, function, repairs)


def reply_text(forum: ForumCode, result: object) -> str:
    """A reply the mentor can post: hints without corrected code."""
    from grader.pipeline import SubmissionResult

    assert isinstance(result, SubmissionResult)
    lines = forum.source.splitlines()
    chosen = [forum.function] if forum.function else list(result.functions)
    paragraphs = []
    for name in chosen:
        function = result.functions.get(name)
        if function is None:
            continue
        if function.passed:
            paragraphs.append(f"Your `{name}` gives the expected results on the "
                              "public and hidden test cases.")
            continue
        for diagnosis in function.diagnoses:
            text = diagnosis.message
            if diagnosis.line and 0 < diagnosis.line <= len(lines):
                quoted = lines[diagnosis.line - 1].strip()
                text = re.sub(r"See cell \d+, line \d+\.",
                              f"Look at this line: `{quoted}`.", text)
            # Cells and their lines are the grader's, not the post's: the
            # offending line is quoted instead.
            text = re.sub(r"The cell defining (`\w+`) \(cell \d+\) has a syntax "
                          r"error at line \d+:", r"The code of \1 has a syntax error:",
                          text)
            text = text.replace("Fix the line and run the cell again.",
                                "Fix that line and run the cell again.")
            paragraphs.append(text)
    greeting = "Thanks for posting your code. Here is what I see:"
    return "\n\n".join([greeting, *(f"- {p}" for p in paragraphs)])


__all__ = ["extract_code", "forum_notebook", "place", "repair", "reply_text"]
