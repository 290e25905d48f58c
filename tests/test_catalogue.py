"""Every catalogued mistake, written as a student would, is diagnosed exactly.

Each submission below makes one mistake (or is correct); the line marked
`# <-` is where the diagnosis must point. Sources run in the fork engine,
the same path as a real batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from grader.assignment import Assignment
from grader.options import GradingOptions
from grader.pipeline import Grader
from tests.harness import grade_cells, marked_line

IMPORTS = ("import numpy as np\nfrom keras import backend as K\n"
           "import tensorflow as tf\n")

FREQS = '''
def compute_class_freqs(labels):
    N = labels.shape[0]
    positive_frequencies = {positive}
    negative_frequencies = {negative}
    return {returned}
'''


def freqs(positive: str = "np.sum(labels, axis=0) / N",
          negative: str = "1 - positive_frequencies",
          returned: str = "positive_frequencies, negative_frequencies") -> str:
    return FREQS.format(positive=positive, negative=negative, returned=returned)


LOSS = '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss {op} {sign}K.{reduce}(pos_weights[i] * {yc} * K.log({pc} + epsilon)
                {plus} neg_weights[i] * (1 - {yc}) * K.log(1 - {pc} + epsilon))
        return loss
    return weighted_loss
'''


def loss(op: str = "+=", sign: str = "-", reduce: str = "mean",
         yc: str = "y_true[:, i]", pc: str = "y_pred[:, i]",
         plus: str = "+") -> str:
    return LOSS.format(op=op, sign=sign, reduce=reduce, yc=yc, pc=pc, plus=plus)


def replaced(source: str, old: str, new: str) -> str:
    assert old in source, old
    return source.replace(old, new, 1)


CATALOGUE = {
    # ------------------------------------------------------------ frequencies
    "freqs.wrong_axis": freqs(positive="np.sum(labels, axis=1) / N  # <-"),
    "freqs.counts_not_fractions": freqs(positive="np.sum(labels, axis=0)  # <-"),
    "freqs.divided_by_classes": freqs(
        positive="np.sum(labels, axis=0) / labels.shape[1]  # <-"),
    "freqs.swapped_outputs": freqs(
        returned="negative_frequencies, positive_frequencies  # <-"),
    "freqs.negative_wrong": freqs(negative="positive_frequencies  # <-"),
    "freqs.integer_division": freqs(positive="np.sum(labels, axis=0) // N  # <-"),
    "freqs.overall_scalar": freqs(positive="np.mean(labels)  # <-"),
    "freqs.rounded": freqs(positive="np.round(np.sum(labels, axis=0) / N, 3)  # <-"),
    "freqs.mutates_input": replaced(
        freqs(), "    N = labels.shape[0]\n",
        "    N = labels.shape[0]\n    labels.sort(axis=0)  # <-\n"),
    "freqs.unfinished": freqs(positive="None  # <-", negative="None"),
    # ------------------------------------------------------------ weighted loss
    "loss.sum_instead_of_mean": replaced(loss(reduce="sum"), "epsilon)\n",
                                         "epsilon)  # <-\n"),
    "loss.mean_over_all": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        return -K.mean(pos_weights * y_true * K.log(y_pred + epsilon)  # <-
                       + neg_weights * (1 - y_true) * K.log(1 - y_pred + epsilon))
    return weighted_loss
''',
    "loss.missing_epsilon": replaced(replaced(
        loss(), "K.log(y_pred[:, i] + epsilon)\n", "K.log(y_pred[:, i])  # <-\n"),
        "K.log(1 - y_pred[:, i] + epsilon))", "K.log(1 - y_pred[:, i]))"),
    "loss.epsilon_hardcoded": replaced(replaced(
        loss(), "K.log(y_pred[:, i] + epsilon)\n",
        "K.log(y_pred[:, i] + K.epsilon())  # <-\n"),
        "1 - y_pred[:, i] + epsilon))", "1 - y_pred[:, i] + K.epsilon()))"),
    "loss.epsilon_outside_log": replaced(replaced(
        loss(), "K.log(y_pred[:, i] + epsilon)\n",
        "(K.log(y_pred[:, i]) + epsilon)  # <-\n"),
        "K.log(1 - y_pred[:, i] + epsilon))", "(K.log(1 - y_pred[:, i]) + epsilon))"),
    "loss.epsilon_one_term": replaced(
        loss(), "K.log(1 - y_pred[:, i] + epsilon))",
        "K.log(1 - y_pred[:, i]))  # <-"),
    "loss.swapped_weights": replaced(replaced(
        loss(), "K.mean(pos_weights[i]", "K.mean(neg_weights[i]"),
        "+ neg_weights[i]", "+ pos_weights[i]").replace(
        "+ epsilon)\n", "+ epsilon)  # <-\n", 1),
    "loss.weights_ignored": replaced(replaced(
        loss(), "K.mean(pos_weights[i] * ", "K.mean("), "+ neg_weights[i] * ", "+ "
        ).replace("+ epsilon)\n", "+ epsilon)  # <-\n", 1),
    "loss.missing_negation": replaced(loss(sign=""), "epsilon)\n", "epsilon)  # <-\n"),
    "loss.missing_negative_term": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss += -K.mean(pos_weights[i] * y_true[:, i] * K.log(y_pred[:, i] + epsilon))  # <-
        return loss
    return weighted_loss
''',
    "loss.missing_positive_term": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss += -K.mean(neg_weights[i] * (1 - y_true[:, i]) * K.log(1 - y_pred[:, i] + epsilon))  # <-
        return loss
    return weighted_loss
''',
    "loss.wrong_negative_log": replaced(
        loss(), "K.log(1 - y_pred[:, i] + epsilon))",
        "K.log(y_pred[:, i] + epsilon))  # <-"),
    "loss.missing_label_complement": replaced(
        loss(), "neg_weights[i] * (1 - y_true[:, i])",
        "neg_weights[i] * y_true[:, i]").replace(
        "+ epsilon))\n", "+ epsilon))  # <-\n", 1),
    "loss.unsliced_columns": loss(yc="y_true", pc="y_pred").replace(
        "+ epsilon)\n", "+ epsilon)  # <-\n", 1),
    "loss.rows_instead_of_columns": loss(yc="y_true[i]", pc="y_pred[i]").replace(
        "+ epsilon)\n", "+ epsilon)  # <-\n", 1),
    "loss.overwrites_accumulator": loss(op="=").replace(
        "+ epsilon)\n", "+ epsilon)  # <-\n", 1),
    "loss.not_summed_over_classes": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        return -K.mean(pos_weights * y_true * K.log(y_pred + epsilon)  # <-
                       + neg_weights * (1 - y_true) * K.log(1 - y_pred + epsilon), axis=0)
    return weighted_loss
''',
    "loss.mutates_input": replaced(
        loss(), "        loss = 0.0\n",
        "        y_true[:] = y_true[::-1]  # <-\n        y_pred[:] = y_pred[::-1]\n"
        "        loss = 0.0\n"),
    "loss.numpy_result": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss += -np.mean(pos_weights[i] * y_true[:, i] * np.log(y_pred[:, i] + epsilon)
                             + neg_weights[i] * (1 - y_true[:, i]) * np.log(1 - y_pred[:, i] + epsilon))
        return np.float32(loss)  # <-
    return weighted_loss
''',
    "loss.unfinished": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0.0
        for i in range(len(pos_weights)):
            loss += None  # <-
        return loss
    return weighted_loss
''',
}


@pytest.fixture(scope="module")
def grader(assignment: Assignment) -> Iterator[Grader]:
    with Grader(assignment, GradingOptions()) as grader:
        yield grader


def function_of(mistake_id: str) -> str:
    return "compute_class_freqs" if mistake_id.startswith("freqs.") \
        else "get_weighted_loss"


def test_every_catalogue_id_has_a_submission(assignment: Assignment) -> None:
    assert sorted(CATALOGUE) == sorted(m.id for m in assignment.catalogue)


@pytest.mark.parametrize("mistake_id", sorted(CATALOGUE))
def test_mistake_is_diagnosed_exactly_at_its_line(
    grader: Grader, mistake_id: str
) -> None:
    source = CATALOGUE[mistake_id]
    result = grade_cells(grader, IMPORTS, source)
    function = result.functions[function_of(mistake_id)]
    assert [d.id for d in function.diagnoses] == [mistake_id]
    diagnosis = function.diagnoses[0]
    assert (diagnosis.cell, diagnosis.line) == (2, marked_line(source))
    assert function.score == function.max_score - min(
        diagnosis.points, function.max_score)


def test_sum_instead_of_mean_evidence_names_the_factor(grader: Grader) -> None:
    result = grade_cells(grader, IMPORTS, CATALOGUE["loss.sum_instead_of_mean"])
    message = result.functions["get_weighted_loss"].diagnoses[0].message
    assert "On the public case with every prediction 0.7 (4 examples, epsilon=1) " \
        "your loss is -1.9825, exactly 4 x the -0.4956 that averaging gives" in message
    assert "See cell 2, line 6." in message


CORRECT = {
    "loop_plus_equals": loss(),
    "loop_minus_equals": loss(op="-=", sign=""),
    "epsilon_first": loss().replace("K.log(y_pred[:, i] + epsilon)",
                                    "K.log(epsilon + y_pred[:, i])"),
    "weights_outside_mean": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        loss = 0
        for i in range(len(pos_weights)):
            pos = pos_weights[i] * K.mean(y_true[:, i] * K.log(y_pred[:, i] + epsilon))
            neg = neg_weights[i] * K.mean((1 - y_true[:, i]) * K.log(1 - y_pred[:, i] + epsilon))
            loss -= pos + neg
        return loss
    return weighted_loss
''',
    "vectorised": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        per_class = K.mean(pos_weights * y_true * K.log(y_pred + epsilon)
                           + neg_weights * (1 - y_true) * K.log(1 - y_pred + epsilon), axis=0)
        return -K.sum(per_class)
    return weighted_loss
''',
    "tensorflow_ops": '''
def get_weighted_loss(pos_weights, neg_weights, epsilon=1e-7):
    def weighted_loss(y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        total = tf.constant(0.0)
        for i in range(len(pos_weights)):
            total += -tf.reduce_mean(pos_weights[i] * y_true[:, i] * tf.math.log(y_pred[:, i] + epsilon)
                + neg_weights[i] * (1 - y_true[:, i]) * tf.math.log(1 - y_pred[:, i] + epsilon))
        return total
    return weighted_loss
''',
    "freqs_count_nonzero": freqs(
        positive="np.count_nonzero(labels, axis=0) / len(labels)"),
    "freqs_python_loops": '''
def compute_class_freqs(labels):
    n_examples, n_classes = labels.shape
    positive_frequencies = np.zeros(n_classes)
    for c in range(n_classes):
        count = 0
        for row in labels:
            if row[c]:
                count += 1
        positive_frequencies[c] = count / n_examples
    negative_frequencies = 1 - positive_frequencies
    return positive_frequencies, negative_frequencies
''',
    "freqs_mean": freqs(positive="np.mean(labels, axis=0)",
                        negative="np.mean(labels == 0, axis=0)"),
}


@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_correct_variants_are_never_flagged(grader: Grader, variant: str) -> None:
    result = grade_cells(grader, IMPORTS, CORRECT[variant])
    for function in result.functions.values():
        if function.name in CORRECT[variant]:
            assert function.diagnoses == ()
            assert function.score == function.max_score
