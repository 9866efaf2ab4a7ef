"""Element types and numpy <-> wire Tensor conversion.

numpy has no bfloat16: bf16 data is carried as ``np.uint16`` arrays holding the raw bf16 bits (the upper half of the
f32 bit pattern). :func:`f32_to_bf16` and :func:`bf16_to_f32` convert; :func:`from_tensor` returns read-only views on the
message's bytes (no copy). An array whose dtype is named ``bfloat16`` (ml_dtypes) is accepted as bf16 and sent as is.
"""

from __future__ import annotations

import enum
from typing import Any, Dict, Optional, Sequence, Union, cast

import numpy as np
import numpy.typing as npt

from kvdb.v1 import tensor_pb2


class DType(enum.IntEnum):
    """Element type on the wire (kvdb.v1.DType)."""

    F32 = 1
    F16 = 2
    BF16 = 3

    @property
    def itemsize(self) -> int:
        return 4 if self is DType.F32 else 2

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        """The numpy dtype arrays of this type have in this client (bf16: uint16 bits)."""
        return _NUMPY[self]


_NUMPY: Dict[DType, "np.dtype[Any]"] = {DType.F32: np.dtype("<f4"), DType.F16: np.dtype("<f2"), DType.BF16: np.dtype("<u2")}

DTypeLike = Union[DType, str, int]


def as_dtype(value: DTypeLike) -> DType:
    """DType from a DType, its proto number, or a name: "f32"/"float32", "f16"/"float16", "bf16"/"bfloat16"."""
    if isinstance(value, DType):
        return value
    if isinstance(value, (int, np.integer)):
        return DType(int(value))
    names = {"f32": DType.F32, "float32": DType.F32, "fp32": DType.F32,
             "f16": DType.F16, "float16": DType.F16, "fp16": DType.F16, "half": DType.F16,
             "bf16": DType.BF16, "bfloat16": DType.BF16}
    key = str(value).lower().removeprefix("dtype_")
    if key not in names:
        raise ValueError(f"unknown dtype {value!r}; use f32, f16 or bf16")
    return names[key]


def dtype_of(array: np.ndarray) -> DType:
    """The wire type of an array: float32 -> F32, float16 -> F16, uint16 (bf16 bits) or ml_dtypes bfloat16 -> BF16."""
    dt = array.dtype
    if dt.name == "bfloat16":
        return DType.BF16
    if dt == np.float32:
        return DType.F32
    if dt == np.float16:
        return DType.F16
    if dt == np.uint16:
        return DType.BF16
    raise TypeError(f"arrays of {dt} cannot be sent; use float32, float16 or uint16 holding bf16 bits (see f32_to_bf16)")


def f32_to_bf16(x: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """bf16 bits of ``x`` (as float32), rounded to nearest even; NaNs stay (quiet) NaNs. Returns a new uint16 array."""
    f = np.ascontiguousarray(x, dtype=np.float32)
    bits = f.view(np.uint32)
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(f)
    if nan.any():
        out[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return out


def bf16_to_f32(bits: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """float32 values of bf16 bits (exact). Returns a new float32 array of the same shape."""
    u = np.asarray(bits)
    if u.dtype.name == "bfloat16":
        u = u.view(np.uint16)
    if u.dtype != np.uint16:
        raise TypeError(f"expected uint16 bf16 bits, got {u.dtype}")
    return (u.astype(np.uint32) << np.uint32(16)).view(np.float32)


def to_float32(array: np.ndarray, dtype: Optional[DTypeLike] = None) -> npt.NDArray[np.float32]:
    """float32 values of a K/V array; uint16 arrays are read as bf16 bits (or as ``dtype`` when given)."""
    kind = as_dtype(dtype) if dtype is not None else dtype_of(array)
    if kind is DType.BF16:
        return bf16_to_f32(array)
    return np.asarray(array, dtype=np.float32)


def convert(array: npt.ArrayLike, dtype: DTypeLike) -> np.ndarray:
    """``array`` as this client represents ``dtype`` (float32, float16, or uint16 bf16 bits); no copy when it already is.

    A uint16 array counts as bf16 bits; anything else is taken as numbers and rounded (bf16: to nearest even).
    """
    target = as_dtype(dtype)
    a = np.asarray(array)
    if a.dtype.name == "bfloat16":
        a = a.view(np.uint16)
    if a.dtype == np.uint16:
        if target is DType.BF16:
            return a
        a = bf16_to_f32(a)
    if target is DType.BF16:
        return f32_to_bf16(a)
    return np.asarray(a, dtype=target.numpy_dtype)


def _wire_array(array: np.ndarray) -> tuple[np.ndarray, DType]:
    kind = dtype_of(array)
    if array.dtype.name == "bfloat16":
        array = array.view(np.uint16)
    # Little-endian, C order: a no-op for the usual arrays (native little-endian, contiguous).
    return np.ascontiguousarray(array, dtype=kind.numpy_dtype), kind


def to_tensor(array: np.ndarray, dtype: Optional[DTypeLike] = None) -> tensor_pb2.Tensor:
    """A wire Tensor of ``array`` (converted to ``dtype`` first when given). One copy: the bytes the message holds."""
    if dtype is not None:
        array = convert(array, dtype)
    a, kind = _wire_array(np.asarray(array))
    return tensor_pb2.Tensor(dtype=cast(Any, int(kind)), shape=list(a.shape), data=a.tobytes())


def from_tensor(tensor: tensor_pb2.Tensor) -> np.ndarray:
    """A read-only numpy view of a wire Tensor's data (no copy): float32, float16, or uint16 bf16 bits."""
    kind = DType(tensor.dtype)
    shape: Sequence[int] = tuple(int(s) for s in tensor.shape)
    return np.frombuffer(tensor.data, dtype=kind.numpy_dtype).reshape(shape)
