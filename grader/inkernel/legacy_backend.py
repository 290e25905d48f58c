"""NumPy-backed stand-in for the legacy Keras 2 backend and a few TensorFlow ops.

Student notebooks written for Keras 2 / TensorFlow 1-2 call ``K.mean``,
``K.log``, ``K.epsilon()``, ``tf.reduce_mean``, ``tf.math.log`` ... The
grading machine has no TensorFlow (1.6 GB, seconds to import) and Keras 3
removed most of ``keras.backend``. This module computes those operations
eagerly with NumPy and returns :class:`Tensor` objects that behave like
TensorFlow's eager tensors where graded values depend on it:

* dtypes: Python floats become float32, Python ints int32, lists follow
  TensorFlow's list rule, NumPy values keep their dtype, and a float tensor
  combined with a non-tensor keeps the tensor's dtype;
* ``mean`` of an integer tensor stays integer (truncating division);
* no NumPy floating-point warnings (TensorFlow prints none either).

Where TensorFlow would raise on mixed dtypes the stand-in is lenient and
uses NumPy's promotion instead: the grader wants the student's number.

:func:`install` registers stand-in ``tensorflow`` and ``keras`` modules in
``sys.modules`` of the grading kernel; :func:`fill_gaps` patches a real
Keras 3 ``keras.backend`` with the legacy functions it lacks.

Only the standard library and NumPy are imported. TensorFlow and Keras are
never imported here, only looked up with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeAlias

import numpy as np

TensorLike: TypeAlias = (
    "Tensor | np.ndarray | np.generic | bool | int | float | complex | Sequence[Any]"
)
DTypeLike: TypeAlias = "np.dtype[Any] | str | type | None"

STANDIN_VERSION = "0.0-grader-standin"
_FLOATX = "float32"
_EPSILON = 1e-07
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_PY_SCALARS = (bool, int, float, complex)

# Python values (np.float64 included: it subclasses float) always convert into
# new arrays, so a Tensor made from them needs no defensive copy.
_NO_ALIAS_SOURCES: tuple[type, ...] = (bool, int, float, complex, list, tuple)


# --------------------------------------------------------------------------
# Conversion helpers
# --------------------------------------------------------------------------


def _as_dtype(dtype: Any) -> np.dtype[Any]:
    """Normalise a non-None dtype argument to a NumPy dtype.

    Accepts NumPy dtypes and scalar types, strings ("float32"), the stand-in
    ``tf.float32`` objects (which are NumPy dtypes), real ``tf.DType`` objects
    (through their ``as_numpy_dtype``) and the Python types float/int/bool.
    """
    if isinstance(dtype, np.dtype):
        return dtype
    # TensorFlow maps Python float and the name "float" to float32, not float64.
    if dtype is float or (isinstance(dtype, str) and dtype == "float"):
        return np.dtype(np.float32)
    if dtype is int:
        return np.dtype(np.int32)
    numpy_type = getattr(dtype, "as_numpy_dtype", None)
    if numpy_type is not None:
        return np.dtype(numpy_type)
    if dtype is None:
        raise TypeError("dtype must not be None here")
    try:
        return np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"Cannot interpret {dtype!r} as a dtype") from exc


def _astype(array: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """Return a new array of ``dtype`` the way tf.cast converts values."""
    if array.dtype.kind == "c" and dtype.kind != "c":
        # tf.cast keeps the real part; NumPy would warn (ComplexWarning).
        array = array.real
    with np.errstate(all="ignore"):  # NaN -> int casts: TF is silent
        return array.astype(dtype)


def _python_scalar_array(value: bool | int | float | complex) -> np.ndarray:  # noqa: PYI041
    """Convert a Python scalar with TensorFlow's default dtypes."""
    if isinstance(value, bool):
        return np.asarray(value, dtype=np.bool_)
    if isinstance(value, int):
        # TF picks int32 and only widens to int64 when the value needs it.
        if _INT32_MIN <= value <= _INT32_MAX:
            return np.asarray(value, dtype=np.int32)
        return np.asarray(value, dtype=np.int64)
    if isinstance(value, float):
        return np.asarray(value, dtype=np.float32)
    return np.asarray(value, dtype=np.complex128)


def _narrow_python_sequence(value: Sequence[Any], array: np.ndarray) -> np.ndarray:
    """Apply TF's list rule: Python floats -> float32, Python ints -> int32.

    Only the first leaf is inspected (cheap): a list of NumPy scalars or of
    tensors keeps the dtype NumPy found, as TensorFlow keeps theirs.
    """
    leaf: Any = value
    while isinstance(leaf, (list, tuple)) and len(leaf) > 0:
        leaf = leaf[0]
    if isinstance(leaf, (np.generic, np.ndarray, Tensor)):
        return array
    if array.dtype == np.float64:
        return array.astype(np.float32)
    if array.dtype == np.int64 and array.size > 0:
        if array.min() >= _INT32_MIN and array.max() <= _INT32_MAX:
            return array.astype(np.int32)
    return array


def _to_array(value: Any, dtype: np.dtype[Any] | None = None) -> np.ndarray:
    """Convert ``value`` like ``tf.convert_to_tensor`` and return an ndarray.

    The result may alias ``value`` (a caller's ndarray or a Tensor's buffer):
    callers must treat it as read-only. With ``dtype`` given, Python values
    are converted straight to it (one rounding, like ``tf.constant``).
    Raises ValueError for values that are not numeric or boolean arrays.
    """
    if isinstance(value, Tensor):
        array = value._array
    elif isinstance(value, (np.ndarray, np.generic)):
        # Checked before Python scalars: np.float64 is a subclass of float.
        array = np.asarray(value)
    elif isinstance(value, _PY_SCALARS):
        if dtype is not None:
            return np.asarray(value, dtype=dtype)
        array = _python_scalar_array(value)
    elif isinstance(value, (list, tuple)):
        if dtype is not None:
            return np.asarray(value, dtype=dtype)
        array = _narrow_python_sequence(value, np.asarray(value))
    else:
        array = np.asarray(value)
    if array.dtype.kind == "O":
        raise ValueError(
            f"Attempt to convert a value ({value!r:.60}) with an unsupported type "
            f"({type(value).__name__}) to a Tensor."
        )
    if dtype is not None and array.dtype != dtype:
        array = _astype(array, dtype)
    return array


def _wrap(result: Any) -> Tensor:
    """Make a Tensor from a fresh array (or a view of a Tensor's buffer).

    Never pass a caller's ndarray here: it is made read-only and shared.
    NumPy scalars (what ufuncs return for 0-d inputs) become 0-d arrays.
    """
    array = np.asarray(result)
    array.flags.writeable = False
    tensor = object.__new__(Tensor)
    object.__setattr__(tensor, "_array", array)
    return tensor


def _frozen_array(value: Any, dtype: DTypeLike = None) -> np.ndarray:
    """Convert ``value`` into a read-only array that nothing else can mutate."""
    target = None if dtype is None else _as_dtype(dtype)
    array = _to_array(value, target)
    if not isinstance(value, (Tensor, *_NO_ALIAS_SOURCES)):
        # A caller's ndarray (or an object exposing its buffer) may change later:
        # a tensor is immutable, so it owns a private copy. (A Tensor's own
        # buffer is read-only already and can be shared.)
        array = array.copy()
    array.flags.writeable = False
    return array


def _tensor_from(value: Any, dtype: DTypeLike = None) -> Tensor:
    """Return ``value`` as a Tensor (the same object when nothing changes)."""
    if isinstance(value, Tensor) and (dtype is None or value.dtype == _as_dtype(dtype)):
        return value
    tensor = object.__new__(Tensor)
    object.__setattr__(tensor, "_array", _frozen_array(value, dtype))
    return tensor


# --------------------------------------------------------------------------
# Binary operations and the TensorFlow dtype rule
# --------------------------------------------------------------------------


def _coerce_operand(other: Any, dtype: np.dtype[Any]) -> Any:
    """Convert the non-Tensor operand of an operation with a ``dtype`` tensor.

    TensorFlow converts a Python number / NumPy value to the float tensor's
    dtype (float32 tensor * float64 ndarray -> float32). For integer and
    bool tensors NumPy's promotion is used instead (lenient where TF raises):
    Python scalars stay Python scalars so that NumPy treats them as weak.
    Returns NotImplemented for values that are not numeric.
    """
    if dtype.kind in "fc":
        try:
            array = np.asarray(other)
        except (TypeError, ValueError):
            return NotImplemented
        kind = array.dtype.kind
        if kind in "biuf" or (kind == "c" and dtype.kind == "c"):
            return _astype(array, dtype)
        if kind == "c":  # complex with a real tensor: promote, never drop
            return array
        return NotImplemented
    if isinstance(other, _PY_SCALARS) and not isinstance(other, np.generic):
        return other
    try:
        return _to_array(other)
    except (TypeError, ValueError):
        return NotImplemented


def _true_divide(x: Any, y: Any) -> Any:
    """Divide like tf.math.truediv: integer / integer gives float64."""
    x_kind = np.asarray(x).dtype.kind
    y_kind = np.asarray(y).dtype.kind
    if x_kind in "biu" and y_kind in "biu":
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    return np.true_divide(x, y)


def _apply_binary(
    array: np.ndarray, other: Any, fn: Callable[[Any, Any], Any], reflected: bool
) -> Any:
    """Compute ``fn(array, other)`` (or reflected) with TF's dtype rule.

    ``array`` is the tensor side (read-only use). Returns a Tensor, or
    NotImplemented when ``other`` cannot take part in arithmetic.
    """
    if isinstance(other, Tensor):
        operand = other._array
    else:
        operand = _coerce_operand(other, array.dtype)
        if operand is NotImplemented:
            return NotImplemented
    left, right = (operand, array) if reflected else (array, operand)
    with np.errstate(all="ignore"):  # TF never warns on inf/nan results
        return _wrap(fn(left, right))


def _binary_function(x: Any, y: Any, fn: Callable[[Any, Any], Any]) -> Tensor:
    """Module-level binary op: a Tensor operand decides, else ``x`` does."""
    if isinstance(x, Tensor):
        result = _apply_binary(x._array, y, fn, reflected=False)
    elif isinstance(y, Tensor):
        result = _apply_binary(y._array, x, fn, reflected=True)
    else:
        # TF converts the first argument first and the second one follows it.
        result = _apply_binary(_to_array(x), y, fn, reflected=False)
    if result is NotImplemented:
        raise TypeError(
            f"unsupported operand types for {getattr(fn, '__name__', fn)}: "
            f"{type(x).__name__!r} and {type(y).__name__!r}"
        )
    return result


def _compare(
    tensor: Tensor, other: Any, fn: Callable[[Any, Any], Any], mismatch: bool
) -> Any:
    """Elementwise ==/!= like TF 2: incompatible shapes give a scalar answer."""
    if isinstance(other, Tensor):
        operand = other._array
    else:
        operand = _coerce_operand(other, tensor._array.dtype)
        if operand is NotImplemented:
            return NotImplemented
    try:
        with np.errstate(all="ignore"):
            return _wrap(fn(tensor._array, operand))
    except ValueError:  # shapes that do not broadcast
        return _wrap(np.asarray(mismatch))


def _operator(
    fn: Callable[[Any, Any], Any], name: str, reflected: bool = False
) -> Callable[[Tensor, Any], Any]:
    def method(self: Tensor, other: Any) -> Any:
        return _apply_binary(self._array, other, fn, reflected)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Elementwise {getattr(fn, '__name__', name)} with TF dtypes."
    return method


# --------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------


class TensorShape(tuple):  # type: ignore[type-arg]
    """A tuple of ints with the few ``tf.TensorShape`` methods students call."""

    __slots__ = ()

    def as_list(self) -> list[int]:
        """Return the dimensions as a list (``tf.TensorShape.as_list``)."""
        return list(self)

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self)

    def num_elements(self) -> int:
        """Product of the dimensions (1 for a scalar shape)."""
        return math.prod(self)


class Tensor:
    """Immutable eager-tensor look-alike wrapping a read-only NumPy array.

    ``Tensor(value, dtype=None)`` converts ``value`` with TensorFlow's rules
    (Python float -> float32, Python int -> int32, NumPy keeps its dtype) and
    keeps a private copy: later changes to ``value`` do not show through.

    Operators broadcast like NumPy and return Tensors, also when the Tensor is
    the right operand of an ndarray or a NumPy scalar (``__array_priority__``
    makes NumPy defer to the reflected operator, as for a real EagerTensor).
    NumPy functions such as ``np.log(t)`` or ``np.sum(t)`` still accept a
    Tensor through ``__array__`` and return NumPy values, as with TensorFlow.
    """

    __slots__ = ("_array",)
    _array: np.ndarray

    # Higher than ndarray's 0: `ndarray * Tensor` defers to Tensor.__rmul__.
    # (No `__array_ufunc__ = None`: it would also make np.log(t), np.sum(t),
    # np.isnan(t) raise TypeError, which they do not do on a real EagerTensor.)
    __array_priority__ = 100
    # `==` is elementwise, so tensors are unhashable (TF raises the same way).
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: TensorLike, dtype: DTypeLike = None) -> None:
        object.__setattr__(self, "_array", _frozen_array(value, dtype))

    # -- immutability --------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Tensor (stand-in) objects are immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Tensor (stand-in) objects are immutable")

    def __copy__(self) -> Tensor:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Tensor:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (Tensor, (self._array,))

    # -- TF tensor API -------------------------------------------------------

    def numpy(self) -> Any:
        """Return the value as TF does: a NumPy scalar for 0-d, else a copy."""
        if self._array.ndim == 0:
            return self._array[()]
        return self._array.copy()

    @property
    def dtype(self) -> np.dtype[Any]:
        """The NumPy dtype (``tf.float32`` in the stand-in is ``np.float32``)."""
        return self._array.dtype

    @property
    def shape(self) -> TensorShape:
        """The shape as a tuple (with ``as_list()`` like ``tf.TensorShape``)."""
        return TensorShape(self._array.shape)

    def get_shape(self) -> TensorShape:
        """Alias of :attr:`shape` (TF 1 style)."""
        return self.shape

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self._array.ndim

    # -- Python protocols ----------------------------------------------------

    def __len__(self) -> int:
        if self._array.ndim == 0:
            raise TypeError("Scalar tensor has no `len()`")
        return self._array.shape[0]

    def __iter__(self) -> Iterator[Tensor]:
        if self._array.ndim == 0:
            raise TypeError("Cannot iterate over a scalar tensor.")
        return (_wrap(row) for row in self._array)

    def __getitem__(self, key: Any) -> Tensor:
        if isinstance(key, Tensor):
            key = key._array
        elif isinstance(key, tuple):
            key = tuple(k._array if isinstance(k, Tensor) else k for k in key)
        return _wrap(self._array[key])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if copy is False:
            if dtype is None or np.dtype(dtype) == self._array.dtype:
                return self._array
            raise ValueError("Unable to avoid copy while creating an array.")
        if dtype is None:
            # A copy: callers of np.asarray(t) may write to what they get.
            return self._array.copy()
        return self._array.astype(dtype)

    def _scalar(self) -> np.ndarray:
        if self._array.size != 1:
            raise TypeError("only size-1 tensors can be converted to Python scalars")
        return self._array.reshape(())

    def __float__(self) -> float:
        return float(self._scalar())

    def __int__(self) -> int:
        return int(self._scalar())

    def __index__(self) -> int:
        if self._array.ndim != 0 or self._array.dtype.kind not in "iu":
            raise TypeError(
                "only integer scalar tensors can be converted to a scalar index"
            )
        return int(self._array)

    def __bool__(self) -> bool:
        return bool(self._array)

    def __round__(self, ndigits: int | None = None) -> Any:
        if ndigits is None and self._array.ndim == 0:
            return round(float(self._array))
        with np.errstate(all="ignore"):
            return _wrap(np.round(self._array, ndigits or 0))

    def _numpy_text(self, as_repr: bool) -> str:
        if self._array.ndim == 0:
            return str(self._array[()])
        text = repr(self._array) if as_repr else str(self._array)
        return "\n" + text if "\n" in text else text

    def __repr__(self) -> str:
        return (
            f"<Tensor (stand-in): shape={self.shape}, dtype={self.dtype.name}, "
            f"numpy={self._numpy_text(as_repr=True)}>"
        )

    def __str__(self) -> str:
        # Same text as TF's str(), so printed output matches reference notebooks.
        return (
            f"tf.Tensor({self._numpy_text(as_repr=False)}, shape={self.shape}, "
            f"dtype={self.dtype.name})"
        )

    def __format__(self, format_spec: str) -> str:
        if not format_spec:
            return str(self)
        return format(self.numpy(), format_spec)

    # -- operators -----------------------------------------------------------

    __add__ = _operator(np.add, "__add__")
    __radd__ = _operator(np.add, "__radd__", reflected=True)
    __sub__ = _operator(np.subtract, "__sub__")
    __rsub__ = _operator(np.subtract, "__rsub__", reflected=True)
    __mul__ = _operator(np.multiply, "__mul__")
    __rmul__ = _operator(np.multiply, "__rmul__", reflected=True)
    __truediv__ = _operator(_true_divide, "__truediv__")
    __rtruediv__ = _operator(_true_divide, "__rtruediv__", reflected=True)
    __floordiv__ = _operator(np.floor_divide, "__floordiv__")
    __rfloordiv__ = _operator(np.floor_divide, "__rfloordiv__", reflected=True)
    __mod__ = _operator(np.remainder, "__mod__")
    __rmod__ = _operator(np.remainder, "__rmod__", reflected=True)
    __pow__ = _operator(np.power, "__pow__")
    __rpow__ = _operator(np.power, "__rpow__", reflected=True)
    __matmul__ = _operator(np.matmul, "__matmul__")
    __rmatmul__ = _operator(np.matmul, "__rmatmul__", reflected=True)
    __and__ = _operator(np.bitwise_and, "__and__")
    __rand__ = _operator(np.bitwise_and, "__rand__", reflected=True)
    __or__ = _operator(np.bitwise_or, "__or__")
    __ror__ = _operator(np.bitwise_or, "__ror__", reflected=True)
    __xor__ = _operator(np.bitwise_xor, "__xor__")
    __rxor__ = _operator(np.bitwise_xor, "__rxor__", reflected=True)
    # Python reflects comparisons itself (3 < t calls t.__gt__(3)).
    __lt__ = _operator(np.less, "__lt__")
    __le__ = _operator(np.less_equal, "__le__")
    __gt__ = _operator(np.greater, "__gt__")
    __ge__ = _operator(np.greater_equal, "__ge__")

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        if other is None:  # TF 2 answers a plain False here
            return False
        return _compare(self, other, np.equal, mismatch=False)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        if other is None:
            return True
        return _compare(self, other, np.not_equal, mismatch=True)

    def __neg__(self) -> Tensor:
        with np.errstate(all="ignore"):
            return _wrap(np.negative(self._array))

    def __pos__(self) -> Tensor:
        return self

    def __abs__(self) -> Tensor:
        return _wrap(np.abs(self._array))

    def __invert__(self) -> Tensor:
        return _wrap(np.invert(self._array))


def is_tensor(x: Any) -> bool:
    """Return True exactly for the stand-in :class:`Tensor` (``type(x) is``)."""
    return type(x) is Tensor


# --------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------


def _reduction_axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
    """Normalise ``axis`` (None, int, list, tuple, Tensor) to sorted axes."""
    if axis is None:
        return None
    if isinstance(axis, Tensor):
        axis = axis._array
    if isinstance(axis, (np.ndarray, np.generic)):
        axis = np.asarray(axis).tolist()
    items = axis if isinstance(axis, (list, tuple)) else [axis]
    axes = set()
    for item in items:
        index = int(item)
        # A scalar has nothing to reduce; axis 0 / -1 are accepted leniently.
        valid = index in (0, -1) if ndim == 0 else -ndim <= index < ndim
        if not valid:
            raise ValueError(
                f"Invalid reduction dimension {index} for input with {ndim} "
                "dimensions."
            )
        if ndim:
            axes.add(index % ndim)
    return tuple(sorted(axes))


def _reduced_count(shape: tuple[int, ...], axes: tuple[int, ...] | None) -> int:
    if axes is None:
        return math.prod(shape)
    return math.prod(shape[i] for i in axes)


def _mean_array(x: Any, axis: Any, keepdims: bool) -> np.ndarray:
    """tf.reduce_mean: integer means truncate toward zero and keep the dtype."""
    array = _to_array(x)
    if array.dtype.kind == "b":  # Keras 2's K.mean casts bool to floatx
        array = array.astype(_FLOATX)
    axes = _reduction_axes(axis, array.ndim)
    count = _reduced_count(array.shape, axes)
    with np.errstate(all="ignore"):
        if array.dtype.kind in "iu":
            total = np.asarray(
                np.sum(array, axis=axes, keepdims=keepdims, dtype=array.dtype)
            )
            if count == 0:
                return np.zeros_like(total)
            # Floor division, then step back toward zero for inexact negatives:
            # TF divides integers like C does.
            quotient = total // count
            if array.dtype.kind == "i":
                quotient = quotient + ((quotient < 0) & (quotient * count != total))
            return np.asarray(quotient, dtype=array.dtype)
        if count == 0:
            # np.mean would warn "Mean of empty slice"; TF gives NaN silently.
            shape = np.shape(np.sum(array, axis=axes, keepdims=keepdims))
            return np.full(shape, np.nan, dtype=array.dtype)
        return np.asarray(np.mean(array, axis=axes, keepdims=keepdims))


def _sum_array(x: Any, axis: Any, keepdims: bool) -> np.ndarray:
    """tf.reduce_sum: the dtype is kept (NumPy would widen int32 to int64)."""
    array = _to_array(x)
    if array.dtype.kind == "b":  # TF raises on bool; lenient: count the Trues
        array = array.astype(np.int32)
    axes = _reduction_axes(axis, array.ndim)
    with np.errstate(all="ignore"):
        return np.asarray(
            np.sum(array, axis=axes, keepdims=keepdims, dtype=array.dtype)
        )


def _extreme_array(x: Any, axis: Any, keepdims: bool, largest: bool) -> np.ndarray:
    """tf.reduce_max / reduce_min; an empty reduction gives the identity."""
    array = _to_array(x)
    axes = _reduction_axes(axis, array.ndim)
    fn = np.max if largest else np.min
    if _reduced_count(array.shape, axes) > 0:
        return np.asarray(fn(array, axis=axes, keepdims=keepdims))
    kind = array.dtype.kind
    if kind == "f":
        initial: Any = -np.inf if largest else np.inf
    elif kind in "iu":
        info = np.iinfo(array.dtype)
        initial = info.min if largest else info.max
    else:
        initial = not largest
    return np.asarray(fn(array, axis=axes, keepdims=keepdims, initial=initial))


def _legacy_reduce_args(
    axis: Any, keepdims: Any, reduction_indices: Any, keep_dims: Any
) -> tuple[Any, bool]:
    """Merge TF 1's ``reduction_indices`` / ``keep_dims`` into TF 2's names."""
    if axis is None:
        axis = reduction_indices
    if keep_dims is not None:
        keepdims = keep_dims
    return axis, bool(keepdims)


# --------------------------------------------------------------------------
# Keras 2 backend functions (``from keras import backend as K``)
# --------------------------------------------------------------------------


def epsilon() -> float:
    """Return the fuzz factor Keras uses, the Python float 1e-07."""
    return _EPSILON


def floatx() -> str:
    """Return Keras' default float type name, ``"float32"``."""
    return _FLOATX


def mean(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes when None), as ``K.mean``.

    Float inputs keep their dtype. Integer inputs stay integer: the sum
    divided by the count, truncated toward zero (TF's reduce_mean on ints).
    Bool inputs are cast to float32 first, as Keras 2 does.
    """
    return _wrap(_mean_array(x, axis, keepdims))


def sum(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` keeping the dtype; bool inputs count as int32."""
    return _wrap(_sum_array(x, axis, keepdims))


def max(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Maximum over ``axis`` keeping the dtype (``K.max``)."""
    return _wrap(_extreme_array(x, axis, keepdims, largest=True))


def min(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Minimum over ``axis`` keeping the dtype (``K.min``)."""
    return _wrap(_extreme_array(x, axis, keepdims, largest=False))


def _float_unary(x: Any, fn: Callable[[np.ndarray], Any]) -> Tensor:
    """Apply a float-valued ufunc. Floats keep their dtype; integer and bool
    inputs are computed in float64 (TF would raise; NumPy's choice for ints)."""
    array = _to_array(x)
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    with np.errstate(all="ignore"):  # log(0) = -inf silently, like TF
        return _wrap(fn(array))


def log(x: TensorLike) -> Tensor:
    """Natural logarithm; float dtypes are kept, ``log(0)`` is -inf silently."""
    return _float_unary(x, np.log)


def exp(x: TensorLike) -> Tensor:
    """Exponential; float dtypes are kept, overflow gives inf silently."""
    return _float_unary(x, np.exp)


def sqrt(x: TensorLike) -> Tensor:
    """Square root after clipping negatives to 0, as Keras 2's ``K.sqrt`` does."""
    array = _to_array(x)
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    with np.errstate(all="ignore"):
        return _wrap(np.sqrt(np.maximum(array, array.dtype.type(0))))


def square(x: TensorLike) -> Tensor:
    """Elementwise square keeping the dtype."""
    with np.errstate(all="ignore"):
        return _wrap(np.square(_to_array(x)))


def abs(x: TensorLike) -> Tensor:
    """Elementwise absolute value keeping the dtype (complex gives real)."""
    return _wrap(np.abs(_to_array(x)))


def _bound(value: Any, dtype: np.dtype[Any]) -> np.ndarray:
    # Keras 2 converts clip bounds to the clipped tensor's dtype.
    if isinstance(value, Tensor):
        return _astype(value._array, dtype)
    return _astype(np.asarray(value), dtype)


def _clip_array(array: np.ndarray, low: Any, high: Any) -> np.ndarray:
    """min(x, high) then max(., low), as TF's clip_by_value; None skips a side."""
    result = array
    with np.errstate(all="ignore"):
        if high is not None:
            result = np.minimum(result, _bound(high, array.dtype))
        if low is not None:
            result = np.maximum(result, _bound(low, array.dtype))
    return result.copy() if result is array else result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating))


def clip(x: TensorLike, min_value: Any, max_value: Any) -> Tensor:
    """Clip to ``[min_value, max_value]`` in ``x``'s dtype, as ``K.clip``.

    Like Keras 2, a ``max_value`` below ``min_value`` is raised to it; a
    None bound leaves that side open.
    """
    if _is_number(min_value) and _is_number(max_value) and max_value < min_value:
        max_value = min_value
    return _wrap(_clip_array(_to_array(x), min_value, max_value))


def _constant(value: Any, dtype: DTypeLike, shape: Any) -> Tensor:
    tensor = _tensor_from(value, dtype)
    if shape is None:
        return tensor
    target = _shape_tuple(shape)
    array = tensor._array
    if array.shape == target:
        return tensor
    if array.size == math.prod(target):
        return _wrap(array.reshape(target))
    if array.size == 1:
        return _wrap(np.full(target, array.reshape(()), dtype=array.dtype))
    raise TypeError(
        f"Eager execution of tf.constant with unsupported shape. Tried to convert "
        f"a value of {array.size} elements to a tensor of shape {target}."
    )


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, Tensor):
        shape = shape._array
    if isinstance(shape, (np.ndarray, np.generic)):
        shape = np.asarray(shape).tolist()
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(d) for d in shape)


def constant(
    value: Any, dtype: DTypeLike = None, shape: Any = None, name: str | None = None
) -> Tensor:
    """``K.constant``: a Tensor of ``dtype``, float32 (floatx) by default.

    With ``shape``, a one-element value fills the shape and a value with as
    many elements is reshaped (``tf.constant`` semantics). ``name`` is ignored.
    """
    return _constant(value, _FLOATX if dtype is None else dtype, shape)


def cast(x: TensorLike, dtype: DTypeLike) -> Tensor:
    """Convert ``x`` (TF default dtypes first, as TF does) then cast to ``dtype``.

    Float to integer truncates toward zero, complex to real keeps the real
    part; the same Tensor is returned when it already has ``dtype``.
    """
    target = _as_dtype(dtype)
    if isinstance(x, Tensor) and x.dtype == target:
        return x
    array = _to_array(x)
    if array.dtype == target:
        return _tensor_from(x)
    return _wrap(_astype(array, target))


def cast_to_floatx(x: Any) -> Any:
    """Keras 2 semantics: a Tensor is cast to float32 (a Tensor); anything else
    becomes a float32 NumPy array (Keras 2 returned ``np.asarray`` here)."""
    if isinstance(x, Tensor):
        return cast(x, _FLOATX)
    return np.asarray(x, dtype=_FLOATX)


def maximum(x: TensorLike, y: TensorLike) -> Tensor:
    """Elementwise maximum with broadcasting and the TF dtype rule."""
    return _binary_function(x, y, np.maximum)


def minimum(x: TensorLike, y: TensorLike) -> Tensor:
    """Elementwise minimum with broadcasting and the TF dtype rule."""
    return _binary_function(x, y, np.minimum)


def pow(x: TensorLike, a: TensorLike) -> Tensor:
    """Elementwise ``x ** a``; a number exponent takes a float ``x``'s dtype."""
    return _binary_function(x, a, np.power)


def _filled_like(x: Any, dtype: DTypeLike, fill: int) -> Tensor:
    array = _to_array(x)
    target = array.dtype if dtype is None else _as_dtype(dtype)
    return _wrap(np.full(array.shape, fill, dtype=target))


def ones_like(
    x: TensorLike, dtype: DTypeLike = None, name: str | None = None
) -> Tensor:
    """Ones with ``x``'s shape and (unless given) dtype."""
    return _filled_like(x, dtype, 1)


def zeros_like(
    x: TensorLike, dtype: DTypeLike = None, name: str | None = None
) -> Tensor:
    """Zeros with ``x``'s shape and (unless given) dtype."""
    return _filled_like(x, dtype, 0)


def get_value(x: Any) -> Any:
    """A Tensor's NumPy value (``.numpy()``); other values are returned as they
    are, as Keras 2 does for non-tensors."""
    if isinstance(x, Tensor):
        return x.numpy()
    return x


def eval(x: Any) -> Any:
    """Same as :func:`get_value` (``K.eval``)."""
    return get_value(x)


# --------------------------------------------------------------------------
# TensorFlow functions (stand-in ``tensorflow`` namespace)
# --------------------------------------------------------------------------


def _named(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__name__ = fn.__qualname__ = name
        return fn

    return decorate


def _tf_reduction(
    tf_name: str, reduce_array: Callable[[Any, Any, bool], np.ndarray], doc: str
) -> Callable[..., Tensor]:
    """A tf.reduce_* function; TF 1's ``reduction_indices``/``keep_dims`` accepted."""

    def reduction(
        input_tensor: Any,
        axis: Any = None,
        keepdims: Any = False,
        name: str | None = None,
        reduction_indices: Any = None,
        keep_dims: Any = None,
    ) -> Tensor:
        axis, keep = _legacy_reduce_args(axis, keepdims, reduction_indices, keep_dims)
        return _wrap(reduce_array(input_tensor, axis, keep))

    reduction.__doc__ = doc
    return _named(tf_name)(reduction)


_tf_reduce_mean = _tf_reduction(
    "reduce_mean", _mean_array, "tf.reduce_mean (the mean of ints stays int).")
_tf_reduce_sum = _tf_reduction(
    "reduce_sum", _sum_array, "tf.reduce_sum keeping the dtype (bool counts as int32).")
_tf_reduce_max = _tf_reduction(
    "reduce_max", lambda x, axis, keep: _extreme_array(x, axis, keep, largest=True),
    "tf.reduce_max keeping the dtype.")
_tf_reduce_min = _tf_reduction(
    "reduce_min", lambda x, axis, keep: _extreme_array(x, axis, keep, largest=False),
    "tf.reduce_min keeping the dtype.")


@_named("constant")
def _tf_constant(
    value: Any,
    dtype: DTypeLike = None,
    shape: Any = None,
    name: str | None = None,
    verify_shape: bool = False,
) -> Tensor:
    """tf.constant: the dtype is inferred (Python float -> float32) unless given."""
    return _constant(value, dtype, shape)


@_named("cast")
def _tf_cast(x: Any, dtype: DTypeLike, name: str | None = None) -> Tensor:
    """tf.cast."""
    return cast(x, dtype)


@_named("convert_to_tensor")
def _tf_convert_to_tensor(
    value: Any,
    dtype: DTypeLike = None,
    dtype_hint: DTypeLike = None,
    name: str | None = None,
    preferred_dtype: DTypeLike = None,
) -> Tensor:
    """tf.convert_to_tensor; a hint applies only when it loses nothing.

    Lenient: a Tensor of another dtype is cast instead of raising.
    """
    if dtype is not None:
        return _tensor_from(value, dtype)
    hint = dtype_hint if dtype_hint is not None else preferred_dtype
    if hint is not None and not isinstance(value, (Tensor, np.ndarray, np.generic)):
        target = _as_dtype(hint)
        if np.can_cast(_to_array(value).dtype, target, casting="same_kind"):
            return _tensor_from(value, target)
    return _tensor_from(value)


@_named("clip_by_value")
def _tf_clip_by_value(
    t: Any, clip_value_min: Any, clip_value_max: Any, name: str | None = None
) -> Tensor:
    """tf.clip_by_value: bounds are converted to ``t``'s dtype."""
    return _wrap(_clip_array(_to_array(t), clip_value_min, clip_value_max))


def _tf_binary(fn: Callable[[Any, Any], Any], tf_name: str) -> Callable[..., Tensor]:
    def op(x: Any, y: Any, name: str | None = None) -> Tensor:
        return _binary_function(x, y, fn)

    op.__name__ = op.__qualname__ = tf_name
    op.__doc__ = f"tf.{tf_name} with broadcasting and the TF dtype rule."
    return op


def _tf_unary(fn: Callable[[Any], Tensor], tf_name: str) -> Callable[..., Tensor]:
    def op(x: Any, name: str | None = None) -> Tensor:
        return fn(x)

    op.__name__ = op.__qualname__ = tf_name
    op.__doc__ = f"tf.{tf_name} (stand-in)."
    return op


@_named("sqrt")
def _tf_sqrt(x: Any, name: str | None = None) -> Tensor:
    """tf.sqrt: unlike K.sqrt, negatives give NaN."""
    return _float_unary(x, np.sqrt)


@_named("ones_like")
def _tf_ones_like(
    input: Any, dtype: DTypeLike = None, name: str | None = None
) -> Tensor:
    """tf.ones_like."""
    return _filled_like(input, dtype, 1)


@_named("zeros_like")
def _tf_zeros_like(
    input: Any, dtype: DTypeLike = None, name: str | None = None
) -> Tensor:
    """tf.zeros_like."""
    return _filled_like(input, dtype, 0)


_TF_DTYPE_NAMES = {
    "float16": "float16",
    "half": "float16",
    "float32": "float32",
    "float64": "float64",
    "double": "float64",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "bool": "bool",
    "complex64": "complex64",
    "complex128": "complex128",
}

# Names patched into a real keras.backend by fill_gaps() and exported by the
# stand-in keras.backend.
_KERAS_BACKEND_NAMES = (
    "abs",
    "cast",
    "cast_to_floatx",
    "clip",
    "constant",
    "epsilon",
    "eval",
    "exp",
    "floatx",
    "get_value",
    "is_tensor",
    "log",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "ones_like",
    "pow",
    "sqrt",
    "square",
    "sum",
    "zeros_like",
)


__all__ = ['Tensor', 'TensorShape', 'fill_gaps', 'install', *_KERAS_BACKEND_NAMES]


def _keras_backend_attrs() -> dict[str, Any]:
    namespace = globals()
    return {name: namespace[name] for name in _KERAS_BACKEND_NAMES}


def _tf_math_attrs() -> dict[str, Any]:
    return {
        "log": _tf_unary(log, "log"),
        "exp": _tf_unary(exp, "exp"),
        "square": _tf_unary(square, "square"),
        "abs": _tf_unary(abs, "abs"),
        "sqrt": _tf_sqrt,
        "reduce_mean": _tf_reduce_mean,
        "reduce_sum": _tf_reduce_sum,
        "reduce_max": _tf_reduce_max,
        "reduce_min": _tf_reduce_min,
        "multiply": _tf_binary(np.multiply, "multiply"),
        "add": _tf_binary(np.add, "add"),
        "subtract": _tf_binary(np.subtract, "subtract"),
        "divide": _tf_binary(_true_divide, "divide"),
        "maximum": _tf_binary(np.maximum, "maximum"),
        "minimum": _tf_binary(np.minimum, "minimum"),
        "pow": _tf_binary(np.power, "pow"),
    }


# --------------------------------------------------------------------------
# Stand-in modules and install()
# --------------------------------------------------------------------------

_STANDIN_MARK = "__grader_standin__"

_FAMILIES: dict[str, tuple[str, ...]] = {
    "keras": ("keras", "keras.backend"),
    "tensorflow": (
        "tensorflow",
        "tensorflow.math",
        "tensorflow.keras",
        "tensorflow.keras.backend",
    ),
}


def _new_module(name: str, attrs: dict[str, Any], package: bool) -> types.ModuleType:
    """A stand-in module whose missing attributes fail with a clear message."""
    module = types.ModuleType(
        name, f"Grader's NumPy stand-in for {name} (no TensorFlow on this machine)."
    )
    module.__dict__.update(attrs)
    setattr(module, _STANDIN_MARK, True)
    # A real spec keeps importlib.util.find_spec(name) working after install
    # (it raises ValueError for a sys.modules entry whose __spec__ is None).
    module.__spec__ = importlib.machinery.ModuleSpec(
        name, None, origin="grader-standin", is_package=package
    )
    if package:
        # An empty search path: `from keras.layers import Dense` raises
        # ModuleNotFoundError instead of finding anything on disk.
        module.__path__ = []

    def __getattr__(attr: str) -> Any:
        raise AttributeError(
            f"module {name!r} (grader's NumPy stand-in) has no attribute "
            f"{attr!r}; the grading machine has no TensorFlow"
        )

    module.__dict__["__getattr__"] = __getattr__
    return module


def _build_family(top: str) -> dict[str, types.ModuleType]:
    """Fresh stand-in modules for ``top`` ("keras" or "tensorflow") by name."""
    if top == "keras":
        backend = _new_module("keras.backend", _keras_backend_attrs(), False)
        keras = _new_module(
            "keras", {"backend": backend, "__version__": STANDIN_VERSION}, True
        )
        return {"keras": keras, "keras.backend": backend}
    tf_backend = _new_module("tensorflow.keras.backend", _keras_backend_attrs(), False)
    tf_keras = _new_module("tensorflow.keras", {"backend": tf_backend}, True)
    math_attrs = _tf_math_attrs()
    tf_math = _new_module("tensorflow.math", math_attrs, True)
    attrs: dict[str, Any] = dict(math_attrs)
    attrs.update(
        {
            "__version__": STANDIN_VERSION,
            "Tensor": Tensor,
            "TensorShape": TensorShape,
            "math": tf_math,
            "keras": tf_keras,
            "constant": _tf_constant,
            "cast": _tf_cast,
            "convert_to_tensor": _tf_convert_to_tensor,
            "clip_by_value": _tf_clip_by_value,
            "ones_like": _tf_ones_like,
            "zeros_like": _tf_zeros_like,
            "is_tensor": is_tensor,
            "newaxis": None,
        }
    )
    attrs.update({k: np.dtype(v) for k, v in _TF_DTYPE_NAMES.items()})
    tf = _new_module("tensorflow", attrs, True)
    return {
        "tensorflow": tf,
        "tensorflow.math": tf_math,
        "tensorflow.keras": tf_keras,
        "tensorflow.keras.backend": tf_backend,
    }


def _is_standin(module: Any) -> bool:
    # vars() rather than getattr: a real module's __getattr__ may lazy-import.
    try:
        return vars(module).get(_STANDIN_MARK) is True
    except TypeError:
        return False


def _family_of(top_module: types.ModuleType, top: str) -> dict[str, Any]:
    """The stand-in family reachable from an installed stand-in top module."""
    family: dict[str, Any] = {top: top_module}
    for name in _FAMILIES[top][1:]:
        module: Any = top_module
        for part in name.split(".")[1:]:
            module = vars(module).get(part) if module is not None else None
        if module is not None:
            family[name] = module
    return family


def _register_family(top: str) -> list[str]:
    """Put the stand-in family of ``top`` in sys.modules; never replace a
    module that is already there. Returns the real modules left in place."""
    existing = sys.modules.get(top)
    family = _build_family(top) if existing is None else _family_of(existing, top)
    kept = []
    for name, module in family.items():
        current = sys.modules.get(name)
        if current is None:
            sys.modules[name] = module
        elif not _is_standin(current):
            kept.append(name)
    return kept


def _spec_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        # Something named like it is there but broken: do not shadow it.
        return True


_MODES = ("auto", "standin", "tensorflow")


def install(mode: str = "auto") -> dict[str, Any]:
    """Put the stand-in in place inside the current process (the kernel).

    * ``"standin"``: register the stand-in ``tensorflow``, ``tensorflow.math``,
      ``tensorflow.keras``, ``tensorflow.keras.backend``, ``keras`` and
      ``keras.backend`` modules in ``sys.modules``.
    * ``"auto"``: the same, but only for a package (keras, tensorflow) that
      ``importlib.util.find_spec`` cannot find; a real one is left to be
      imported by the student's code (it is not imported here).
    * ``"tensorflow"``: register nothing; raise ModuleNotFoundError when
      TensorFlow is not installed (or the stand-in already took its place).

    Modules already in ``sys.modules`` are never replaced. Calling again is
    harmless. Returns a JSON-friendly dict: ``mode``, ``standin_for`` (top
    packages now served by the stand-in), ``real`` (top packages left to the
    real installation) and ``kept`` (module names already imported and left
    untouched), each a sorted list of str. Raises ValueError for other modes.
    """
    if mode not in _MODES:
        raise ValueError(f"install mode must be one of {_MODES}, not {mode!r}")
    report: dict[str, Any] = {"mode": mode, "standin_for": [], "real": [], "kept": []}
    if mode == "tensorflow":
        existing = sys.modules.get("tensorflow")
        if existing is not None and _is_standin(existing):
            raise ModuleNotFoundError(
                "TensorFlow was asked for, but the grader's NumPy stand-in is "
                "already installed as 'tensorflow' in this kernel",
                name="tensorflow",
            )
        if existing is None and not _spec_exists("tensorflow"):
            raise ModuleNotFoundError(
                "TensorFlow was asked for, but it is not installed on the grading "
                "machine (use the 'auto' or 'standin' backend)",
                name="tensorflow",
            )
        report["real"].append("tensorflow")
        return report
    for top in _FAMILIES:
        existing = sys.modules.get(top)
        if existing is not None and not _is_standin(existing):
            report["real"].append(top)
            report["kept"].append(top)
            continue
        if existing is None and mode == "auto" and _spec_exists(top):
            report["real"].append(top)
            continue
        report["kept"].extend(_register_family(top))
        report["standin_for"].append(top)
    for key in ("standin_for", "real", "kept"):
        report[key] = sorted(report[key])
    return report


def fill_gaps() -> list[str]:
    """Add the legacy backend functions a real, imported ``keras.backend`` lacks.

    Keras 3 removed ``K.mean``, ``K.sum``, ``K.log`` ...; student code calling
    them gets the stand-in functions (which return stand-in Tensors). Looks
    at ``sys.modules["keras.backend"]``, ``keras.backend`` as an attribute of
    an imported real ``keras`` and ``tensorflow.keras.backend``; nothing is
    imported. Existing attributes are never replaced. Returns the sorted
    names added ([] when no real Keras is imported or nothing was missing).
    """
    candidates: list[Any] = [
        sys.modules.get("keras.backend"),
        sys.modules.get("tensorflow.keras.backend"),
    ]
    keras = sys.modules.get("keras")
    if keras is not None and not _is_standin(keras):
        try:
            candidates.append(vars(keras).get("backend"))
        except TypeError:
            pass
    added: set[str] = set()
    seen: set[int] = set()
    for module in candidates:
        if not isinstance(module, types.ModuleType) or _is_standin(module):
            continue
        if id(module) in seen:
            continue
        seen.add(id(module))
        for name in _KERAS_BACKEND_NAMES:
            try:
                present = hasattr(module, name)
            except Exception:  # a lazy loader failing: leave that name alone
                continue
            if not present:
                setattr(module, name, globals()[name])
                added.add(name)
    return sorted(added)
