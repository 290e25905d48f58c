"""Forum posts: code found, damage repaired by general rules, reply written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grader.forum import extract_code, place, repair
from tests.conftest import SHARED

FORUM_CASES = SHARED / "cases" / "forum"


def test_asterisks_eaten_inside_a_line_come_back() -> None:
    code, repairs = repair("total = weights[k]values[k] * 2")
    assert code == "total = weights[k] * values[k] * 2"
    assert len(repairs) == 1


def test_an_asterisk_eaten_at_a_line_break_joins_the_lines() -> None:
    code, _ = repair("z = f(a[i]\n(b + 1))")
    assert code == "z = f(a[i] * (b + 1))"


def test_legal_juxtapositions_are_left_alone() -> None:
    source = "y = table[i](x)\nz = [v for v in items[1:]if v]\nw = f(x)(y)"
    assert repair(source)[0] == source


def test_entities_nbsp_and_quotes() -> None:
    code, repairs = repair("s\u00a0= \u2018a\u2019 if x &lt; 3 else \u201cb\u201d")
    assert code == "s = 'a' if x < 3 else \"b\""
    assert len(repairs) == 3


def test_flat_code_gets_its_blocks_back() -> None:
    code, _ = repair("for i in range(3):\nx = i\nif x:\ny = 1\nelse:\ny = 2\nreturn y")
    assert code.splitlines() == [
        "for i in range(3):", "    x = i", "    if x:", "        y = 1",
        "    else:", "        y = 2", "return y"]


def test_fenced_code_is_preferred_to_prose() -> None:
    post = "I tried this:\n```python\nx = 1\n```\nand it fails. Why?"
    assert extract_code(post)[0] == "x = 1\n"


def test_a_fragment_goes_into_the_function_it_fits(assignment) -> None:
    placed, name, _ = place("positive = labels.mean(0)\nreturn positive, 1 - positive",
                            assignment)
    assert name == "compute_class_freqs"
    assert placed.splitlines()[0:2] == ["def compute_class_freqs(labels):",
                                        "    positive = labels.mean(0)"]


@pytest.mark.skipif(not FORUM_CASES.is_dir(), reason="../shared is absent")
@pytest.mark.parametrize("post", sorted(
    p.name for p in FORUM_CASES.glob("*") if not p.name.endswith(".json"))
    if FORUM_CASES.is_dir() else [])
def test_shared_forum_cases(post: str, tmp_path: Path) -> None:
    stem = post.rsplit(".", 1)[0]
    expected = json.loads((FORUM_CASES / f"{stem}.expected.json").read_text())
    out = tmp_path / "forum.json"
    done = subprocess.run([sys.executable, "-m", "grader", "forum",
                           str(FORUM_CASES / post), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["function"] == expected["function"]
    function = report["submissions"][0]["functions"][expected["function"]]
    assert [d["id"] for d in function["diagnoses"]] == expected["diagnoses"]
    for line in expected.get("repaired_lines", []):
        assert any(line in repaired for repaired in report["repairs"])
    assert "Reply:" in done.stdout


def test_an_indented_block_with_a_continuation_line_is_taken_whole() -> None:
    post = ("My loop:\n\n"
            "    for i in range(3):\n"
            "        loss += -(K.sum(a[:, i]) +\n"
            "                  K.sum(b[:, i]))\n\n"
            "Thanks!\n")
    code, repairs = extract_code(post)
    assert code == ("for i in range(3):\n"
                    "    loss += -(K.sum(a[:, i]) +\n"
                    "              K.sum(b[:, i]))")
    assert repairs == []


def test_the_readme_example_post_gets_its_reply(tmp_path: Path) -> None:
    post = Path(__file__).resolve().parent.parent / "examples" / "forum_post.md"
    out = tmp_path / "reply.json"
    done = subprocess.run([sys.executable, "-m", "grader", "forum", str(post),
                           "--json", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    submission = result["submissions"][0]
    assert result["function"] == "get_weighted_loss"
    diagnoses = submission["functions"]["get_weighted_loss"]["diagnoses"]
    assert [d["id"] for d in diagnoses] == ["loss.sum_instead_of_mean"]
    assert "exactly 4 x the -0.4956 that averaging gives" in done.stdout


def test_a_post_without_code_gets_no_reply_but_what_to_ask_for() -> None:
    done = subprocess.run([sys.executable, "-m", "grader", "forum", "-"],
                          input="my loss is wrong, help\n", capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "Error: forum post: no code found in the post; ask for the function's "
        "code, pasted between lines of three backticks (```)")


def test_a_syntax_error_is_shown_by_its_line_not_by_cell_numbers(
        tmp_path: Path) -> None:
    post = tmp_path / "post.md"
    post.write_text(
        "My function fails, why?\n\n```\n"
        "def compute_class_freqs(labels):\n"
        "    N = labels.shape[0]\n"
        "    positive_frequencies = np.sum(labels, axis=0) / N\n"
        "    negative_frequencies = 1 - positive_frequencies)\n"
        "    return positive_frequencies, negative_frequencies\n```\n",
        encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "grader", "forum", str(post)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "- The code of `compute_class_freqs` has a syntax error: unmatched ')': "
        "`negative_frequencies = 1 - positive_frequencies)`. Python cannot run "
        "the cell, so the function does not exist. Fix that line and run the "
        "cell again.")


def test_a_bracket_left_open_before_a_statement_is_the_posters_own() -> None:
    # Markdown eats a `*` only between operands: `return` starts a statement.
    code = ("loss += K.mean(pos_weights[i] * K.log(y_pred[:, i] + epsilon)\n"
            "return loss")
    assert repair(code) == (code, [])


def test_a_post_ending_in_an_indented_line_gives_that_line() -> None:
    post = ("Is this right?\n\n"
            "    loss = K.mean(pos_weights * y_true * K.log(y_pred + epsilon))\n")
    assert extract_code(post) == (
        "loss = K.mean(pos_weights * y_true * K.log(y_pred + epsilon))", [])
