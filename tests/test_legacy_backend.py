"""Tests for the NumPy stand-in of the legacy Keras 2 backend / TensorFlow ops.

No TensorFlow is needed. Tests that touch sys.modules either run in a
subprocess or restore it with monkeypatch, so this process stays clean.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from grader.inkernel import legacy_backend
from grader.inkernel import legacy_backend as K
from grader.inkernel.legacy_backend import Tensor

ROOT = Path(__file__).resolve().parents[1]
HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_KERAS = importlib.util.find_spec("keras") is not None


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _course_loss(y_pred_value: float) -> Tensor:
    """The course's weighted loss, written the way students write it."""
    pos = np.array([0.25, 0.25, 0.5])
    neg = np.array([0.75, 0.75, 0.5])
    eps = 1
    y_true = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]])
    y_pred = np.full((4, 3), y_pred_value)
    loss = 0.0
    for i in range(3):
        loss += -(
            K.mean(
                pos[i] * y_true[:, i] * K.log(y_pred[:, i] + eps)
                + neg[i] * (1 - y_true[:, i]) * K.log(1 - y_pred[:, i] + eps)
            )
        )
    return loss  # type: ignore[return-value]


# -- conversion -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (0.5, np.float32),
        (3, np.int32),
        (True, np.bool_),
        (2**40, np.int64),
        ([1.0, 2.0], np.float32),
        ([1, 2], np.int32),
        ([[1, 2], [3, 2**40]], np.int64),
        (np.array([1.0, 2.0]), np.float64),
        (np.array([1, 2], dtype=np.int64), np.int64),
        (np.float64(0.5), np.float64),
        (np.int16(3), np.int16),
        ([np.float64(1.0), np.float64(2.0)], np.float64),
    ],
)
def test_conversion_follows_tensorflow_defaults(value: object, dtype: type) -> None:
    tensor = Tensor(value)
    assert tensor.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tensor.numpy(), np.asarray(value))


def test_tensor_copies_and_is_immutable() -> None:
    source = np.array([1.0, 2.0])
    tensor = Tensor(source)
    source[0] = 99.0
    assert tensor.numpy().tolist() == [1.0, 2.0]
    out = tensor.numpy()
    out[1] = 42.0
    assert tensor.numpy().tolist() == [1.0, 2.0]
    with pytest.raises(AttributeError):
        tensor.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        tensor[0] = 5.0  # type: ignore[index]
    assert not tensor._array.flags.writeable
    # The caller's array is neither frozen nor shared by operations.
    result = K.log(source)
    assert source.flags.writeable
    assert not np.shares_memory(result._array, source)


def test_numpy_returns_scalars_for_0d() -> None:
    value = K.mean(K.constant([1.0, 2.0])).numpy()
    assert type(value) is np.float32 and value == np.float32(1.5)
    value64 = K.mean(np.array([1.0, 2.0])).numpy()
    assert type(value64) is np.float64 and value64 == 1.5
    array = K.constant([1.0, 2.0]).numpy()
    assert isinstance(array, np.ndarray) and array.dtype == np.float32


# -- backend functions ----------------------------------------------------


def test_mean_of_integers_stays_integer() -> None:
    result = K.mean(np.array([1, 2, 4]))
    assert K.is_tensor(result)
    assert result.dtype == np.int64 and result.shape == ()
    assert result.numpy() == 2 and type(result.numpy()) is np.int64
    # Truncation toward zero, as C / TensorFlow divide integers.
    assert K.mean(np.array([-7, 0, 0])).numpy() == -2
    assert K.mean(np.array([-6, 0, 0])).numpy() == -2
    int32 = K.mean([1, 2])
    assert int32.dtype == np.int32 and int32.numpy() == 1


def test_mean_of_floats_keeps_dtype_and_axes() -> None:
    tensor = K.constant([[1.0, 2.0], [3.0, 5.0]])
    assert K.mean(tensor).dtype == np.float32
    assert K.mean(tensor).numpy() == np.float32(2.75)
    by_column = K.mean(tensor, axis=0)
    assert by_column.dtype == np.float32 and by_column.numpy().tolist() == [2.0, 3.5]
    kept = K.mean(tensor, axis=-1, keepdims=True)
    assert kept.shape == (2, 1) and kept.numpy().ravel().tolist() == [1.5, 4.0]
    both = K.mean(tensor, axis=[0, 1])
    assert both.shape == () and both.numpy() == np.float32(2.75)
    assert K.mean(np.array([True, False])).dtype == np.float32
    with pytest.raises(ValueError):
        K.mean(tensor, axis=2)


def test_sum_keeps_dtype() -> None:
    assert K.sum(np.array([1, 2], dtype=np.int32)).dtype == np.int32
    total = K.sum(np.array([True, True, False]))
    assert total.dtype == np.int32 and total.numpy() == 2
    rows = K.sum(K.constant([[1.0, 2.0], [3.0, 4.0]]), axis=1)
    assert rows.dtype == np.float32 and rows.numpy().tolist() == [3.0, 7.0]


def test_log_keeps_dtype_and_is_silent() -> None:
    assert K.log(K.constant([1.0])).dtype == np.float32
    assert K.log(np.array([1.0])).dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zero = K.log(0.0)
        assert zero.dtype == np.float32 and zero.numpy() == -np.inf
        assert K.log(np.array([0.0, -1.0])).numpy()[0] == -np.inf
        assert np.isnan(K.log(np.array([-1.0])).numpy()[0])
        assert K.exp(K.constant(1000.0)).numpy() == np.inf
        assert (K.constant([1.0]) / 0.0).numpy()[0] == np.inf


def test_ndarray_times_tensor_gives_tensor() -> None:
    result = np.array([1, 0]) * K.log(np.array([0.5, 0.25]))
    assert K.is_tensor(result) and result.dtype == np.float64
    np.testing.assert_array_equal(result.numpy(), [np.log(0.5), 0.0])


def test_float32_tensor_keeps_dtype_with_non_tensors() -> None:
    c = K.constant([1.0, 2.0])
    data = np.array([0.5, 0.25])
    for result in (c * data, data * c, c + np.float64(1.0), np.float64(2.0) * c,
                   c - 1.5, 1.5 - c, c / 2, 2 / c, c ** 2, c * [1.0, 2.0]):
        assert K.is_tensor(result), result
        assert result.dtype == np.float32, result
    assert (data * c).numpy().tolist() == [0.5, 0.5]
    assert (1.5 - c).numpy().tolist() == [0.5, -0.5]


def test_numpy_promotion_otherwise() -> None:
    ints = Tensor(np.array([1, 2], dtype=np.int32))
    assert (ints + 1).dtype == np.int32
    assert (ints * 0.5).dtype == np.float64  # lenient where TF would raise
    assert (K.constant([1.0]) + Tensor(np.array([1.0]))).dtype == np.float64
    assert (ints / Tensor(np.array([2, 4], dtype=np.int32))).dtype == np.float64
    assert (ints / 2).numpy().tolist() == [0.5, 1.0]
    assert (ints // 2).dtype == np.int32
    assert (Tensor(np.array([7])) % 3).numpy().tolist() == [1]


def test_comparisons_and_unary_ops() -> None:
    c = K.constant([1.0, 2.0, 3.0])
    assert (c > 1.5).numpy().tolist() == [False, True, True]
    assert (1.5 < c).numpy().tolist() == [False, True, True]
    assert (np.array([2.0, 2.0, 2.0]) >= c).numpy().tolist() == [True, True, False]
    assert (c == 2.0).numpy().tolist() == [False, True, False]
    assert (c != 2.0).dtype == np.bool_
    assert (c == None) is False  # noqa: E711  (the Tensor's own ==)
    assert (c == [1.0, 2.0]).numpy() == np.False_  # shapes do not broadcast
    assert (-c).numpy().tolist() == [-1.0, -2.0, -3.0]
    assert abs(K.constant(-2.0)).numpy() == 2.0
    matrix = K.constant([[1.0, 2.0], [3.0, 4.0]])
    assert (matrix @ np.array([1.0, 1.0])).numpy().tolist() == [3.0, 7.0]
    assert (np.eye(2) @ matrix).dtype == np.float32
    with pytest.raises(TypeError):
        hash(c)


def test_python_protocols() -> None:
    matrix = Tensor(np.arange(6.0).reshape(2, 3))
    column = matrix[:, 1]
    assert K.is_tensor(column) and column.numpy().tolist() == [1.0, 4.0]
    assert len(matrix) == 2 and matrix.ndim == 2
    assert matrix.shape == (2, 3) and matrix.shape.as_list() == [2, 3]
    rows = [row.numpy().tolist() for row in matrix]
    assert rows == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    scalar = K.constant(0.5)
    assert float(scalar) == 0.5 and int(K.constant(2.7)) == 2
    assert bool(K.constant(1.0)) and not bool(K.constant(0.0))
    with pytest.raises(ValueError):
        bool(matrix)
    with pytest.raises(TypeError):
        len(scalar)
    assert [10, 20, 30][Tensor(1)] == 20
    assert np.asarray(scalar).dtype == np.float32
    assert np.asarray(matrix, dtype=np.int64).dtype == np.int64
    assert f"{scalar:.3f}" == "0.500"
    assert repr(scalar) == "<Tensor (stand-in): shape=(), dtype=float32, numpy=0.5>"
    assert str(scalar) == "tf.Tensor(0.5, shape=(), dtype=float32)"
    assert "array([1., 4.], dtype=float32)" in repr(K.constant([1.0, 4.0]))
    assert copy.deepcopy(scalar) is scalar
    restored = pickle.loads(pickle.dumps(matrix))
    assert restored.dtype == matrix.dtype
    assert restored.numpy().tolist() == matrix.numpy().tolist()


def test_numpy_functions_accept_tensors() -> None:
    # As with a real EagerTensor: NumPy functions return NumPy values.
    c = K.constant([1.0, 4.0])
    assert isinstance(np.log(c), np.ndarray)
    assert np.sum(c) == 5.0
    assert np.isnan(c).tolist() == [False, False]
    assert np.allclose(c, [1.0, 4.0])


def test_epsilon_floatx_constant_cast_clip() -> None:
    assert K.epsilon() == 1e-7 and type(K.epsilon()) is float
    assert K.floatx() == "float32"
    assert K.constant(3).dtype == np.float32
    assert K.constant(3, dtype="int64").dtype == np.int64
    assert K.constant(0.1, dtype="float64").numpy() == 0.1  # no float32 detour
    assert K.constant(2.0, shape=(2, 2)).numpy().tolist() == [[2.0, 2.0]] * 2
    assert K.constant([1, 2, 3, 4], shape=[2, 2]).shape == (2, 2)
    with pytest.raises(TypeError):
        K.constant([1, 2, 3], shape=(2, 2))
    truncated = K.cast(np.array([1.7, -1.7]), "int32")
    assert truncated.dtype == np.int32 and truncated.numpy().tolist() == [1, -1]
    assert K.cast(K.constant([1.0, 0.0]), np.bool_).numpy().tolist() == [True, False]
    same = K.constant([1.0])
    assert K.cast(same, np.float32) is same
    clipped = K.clip(K.constant([-1.0, 0.5, 2.0]), 0.0, 1.0)
    assert clipped.dtype == np.float32 and clipped.numpy().tolist() == [0.0, 0.5, 1.0]
    eps = K.epsilon()
    assert K.clip(np.array([0.0, 1.0]), eps, 1 - eps).dtype == np.float64
    assert K.clip(np.array([5, -5]), None, 3).numpy().tolist() == [3, -5]
    assert K.clip(np.array([5.0]), 2.0, 1.0).numpy().tolist() == [2.0]  # max<min
    cast_np = K.cast_to_floatx([1, 2])
    assert isinstance(cast_np, np.ndarray) and cast_np.dtype == np.float32


def test_other_backend_functions() -> None:
    assert K.sqrt(np.array([4.0, -1.0])).numpy().tolist() == [2.0, 0.0]
    assert K.square(Tensor(np.array([3], dtype=np.int32))).dtype == np.int32
    assert K.abs([-1.5]).numpy().tolist() == [1.5]
    assert K.exp(0.0).numpy() == np.float32(1.0)
    assert K.maximum(K.constant([1.0, 3.0]), 2.0).numpy().tolist() == [2.0, 3.0]
    assert K.minimum(np.array([1, 3]), 2).numpy().tolist() == [1, 2]
    assert K.pow(K.constant([2.0]), 3).dtype == np.float32
    assert K.ones_like(np.zeros((2, 2), dtype=np.int64)).dtype == np.int64
    assert K.zeros_like(K.constant([1.0]), dtype="float64").dtype == np.float64
    assert K.max(np.array([1, 5, 3])).numpy() == 5
    assert K.min(K.constant([[1.0, 5.0]]), axis=1).numpy().tolist() == [1.0]
    assert type(K.eval(K.constant(1.0))) is np.float32
    assert K.get_value(K.constant([1.0])).tolist() == [1.0]
    assert K.eval(3.0) == 3.0


def test_is_tensor_is_exact() -> None:
    assert K.is_tensor(K.constant(1.0))
    assert not K.is_tensor(np.array(1.0))
    assert not K.is_tensor(1.0)


def test_course_weighted_loss() -> None:
    for y_pred_value in (0.7, 0.3):
        loss = _course_loss(y_pred_value)
        assert K.is_tensor(loss)
        assert loss.dtype == np.float64
        value = loss.numpy()
        assert type(value) is np.float64
        assert value == pytest.approx(-0.4956203, abs=1e-6)


# -- install / fill_gaps ----------------------------------------------------


def test_install_standin_in_subprocess() -> None:
    result = _run_python(
        """
        import json, sys
        from grader.inkernel import legacy_backend
        assert not any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
        auto = legacy_backend.install()  # imports nothing real, even if installed
        assert not any(
            m.split(".")[0] in ("tensorflow", "keras")
            and not getattr(sys.modules[m], "__grader_standin__", False)
            for m in sys.modules
        )
        report = legacy_backend.install("standin")
        again = legacy_backend.install("standin")
        from keras import backend as K
        import tensorflow as tf
        from tensorflow.keras import backend as K2
        import keras.backend, tensorflow.math
        try:
            from keras.layers import Dense
        except ModuleNotFoundError:
            layers = "ModuleNotFoundError"
        try:
            K.foo
        except AttributeError as exc:
            message = str(exc)
        import importlib.util
        out = {
            "auto": auto,
            "report": report,
            "again": again,
            "layers": layers,
            "message": message,
            "log": float(tf.math.log(1.0)),
            "mean": float(tf.reduce_mean([1.0, 2.0])),
            "tf1_mean": tf.reduce_mean([[1.0], [3.0]], reduction_indices=0).numpy()
            .tolist(),
            "k_mean_dtype": str(K.mean([1.0, 2.0]).dtype),
            "k2": K2.epsilon(),
            "version": [tf.__version__, __import__("keras").__version__],
            "float32": tf.float32 == "float32",
            "is_tensor": isinstance(tf.constant(1.0), tf.Tensor),
            "standin": [tf.__grader_standin__, K.__grader_standin__],
            "spec": importlib.util.find_spec("tensorflow") is not None,
            "fill": legacy_backend.fill_gaps(),
        }
        print(json.dumps(out))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["report"] == {
        "mode": "standin",
        "standin_for": ["keras", "tensorflow"],
        "real": [],
        "kept": [],
    }
    assert out["again"] == out["report"]
    missing = sorted(
        name for name, found in (("keras", HAS_KERAS), ("tensorflow", HAS_TF))
        if not found
    )
    assert out["auto"]["mode"] == "auto"
    assert out["auto"]["standin_for"] == missing
    assert out["auto"]["real"] == sorted({"keras", "tensorflow"} - set(missing))
    assert out["layers"] == "ModuleNotFoundError"
    assert out["message"] == (
        "module 'keras.backend' (grader's NumPy stand-in) has no attribute 'foo'; "
        "the grading machine has no TensorFlow"
    )
    assert out["log"] == 0.0 and out["mean"] == 1.5
    assert out["tf1_mean"] == [2.0]
    assert out["k_mean_dtype"] == "float32"
    assert out["k2"] == 1e-7
    assert out["version"] == ["0.0-grader-standin"] * 2
    assert out["float32"] and out["is_tensor"] and out["standin"] == [True, True]
    assert out["spec"] and out["fill"] == []


@pytest.mark.skipif(HAS_TF, reason="TensorFlow is installed here")
def test_install_tensorflow_mode_needs_tensorflow() -> None:
    before = set(sys.modules)
    with pytest.raises(ModuleNotFoundError, match="TensorFlow"):
        legacy_backend.install("tensorflow")
    assert "tensorflow" not in set(sys.modules) - before


def test_install_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError):
        legacy_backend.install("torch")


def test_install_keeps_modules_already_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_tf = types.ModuleType("tensorflow")
    fake_keras = types.ModuleType("keras")
    monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
    monkeypatch.setitem(sys.modules, "keras", fake_keras)
    report = legacy_backend.install("standin")
    assert report["standin_for"] == [] and report["real"] == ["keras", "tensorflow"]
    assert report["kept"] == ["keras", "tensorflow"]
    assert sys.modules["tensorflow"] is fake_tf


def test_fill_gaps_patches_a_real_keras_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("keras", "keras.backend", "tensorflow.keras.backend"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert legacy_backend.fill_gaps() == []

    def own_floatx() -> str:
        return "float16"

    backend = types.ModuleType("keras.backend")
    backend.floatx = own_floatx  # type: ignore[attr-defined]
    keras = types.ModuleType("keras")
    keras.backend = backend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keras", keras)
    monkeypatch.setitem(sys.modules, "keras.backend", backend)
    added = legacy_backend.fill_gaps()
    assert "mean" in added and "log" in added and "epsilon" in added
    assert "floatx" not in added and backend.floatx is own_floatx
    assert backend.mean(np.array([1.0, 3.0])).numpy() == 2.0
    assert legacy_backend.fill_gaps() == []
