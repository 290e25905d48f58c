"""Student code gives the same values and dtypes under the stand-in and real TF.

Runs only where TensorFlow is installed: `pip install tensorflow-cpu` then
`python -m pytest -m tensorflow`.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from grader.inkernel import legacy_backend

pytestmark = [
    pytest.mark.tensorflow,
    pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                       reason="TensorFlow is not installed"),
]

STUDENT_FUNCTIONS = {
    "reduce_mean_loop": '''
def weighted_loss(y_true, y_pred, pos_weights, neg_weights, epsilon):
    loss = 0.0
    for i in range(len(pos_weights)):
        loss += -tf.reduce_mean(pos_weights[i] * y_true[:, i] * tf.math.log(y_pred[:, i] + epsilon)
            + neg_weights[i] * (1 - y_true[:, i]) * tf.math.log(1 - y_pred[:, i] + epsilon))
    return loss
''',
    "cast_and_sum": '''
def weighted_loss(y_true, y_pred, pos_weights, neg_weights, epsilon):
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.constant(y_pred, dtype=tf.float32)
    terms = pos_weights * y_true * tf.math.log(y_pred + epsilon) \\
        + neg_weights * (1 - y_true) * tf.math.log(1 - y_pred + epsilon)
    return -tf.reduce_sum(tf.reduce_mean(terms, axis=0))
''',
    "integer_mean": '''
def weighted_loss(y_true, y_pred, pos_weights, neg_weights, epsilon):
    return tf.reduce_mean(tf.constant(y_true))
''',
}


def run(source: str, tf: Any) -> Any:
    namespace: dict[str, Any] = {"tf": tf, "np": np}
    exec(compile(source, "<student>", "exec"), namespace)
    y_true = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]])
    y_pred = np.full((4, 3), 0.7)
    pos, neg = np.array([0.25, 0.25, 0.5]), np.array([0.75, 0.75, 0.5])
    return namespace["weighted_loss"](y_true, y_pred, pos, neg, 1).numpy()


@pytest.mark.parametrize("name", sorted(STUDENT_FUNCTIONS))
def test_same_value_and_dtype(name: str) -> None:
    import tensorflow as real_tf

    standin_tf = legacy_backend._build_family("tensorflow")["tensorflow"]
    real = run(STUDENT_FUNCTIONS[name], real_tf)
    standin = run(STUDENT_FUNCTIONS[name], standin_tf)
    assert np.asarray(standin).dtype == np.asarray(real).dtype
    np.testing.assert_allclose(standin, real, rtol=1e-6)
