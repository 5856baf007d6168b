"""Shape checks the Graph-IR verifiers share; each raises VerifyException naming the value and the rule."""

from __future__ import annotations

from xdsl.dialects.builtin import DYNAMIC_INDEX, TensorType
from xdsl.ir import Attribute, SSAValue
from xdsl.utils.exceptions import VerifyException

FLOAT_ELEMENTS = ("f32", "bf16", "f16")


def dims(op_name: str, role: str, value: SSAValue | Attribute) -> tuple[int, ...]:
    """The shape of a tensor operand/result, with None... dynamic dims kept as DYNAMIC_INDEX."""
    attr_type = value.type if isinstance(value, SSAValue) else value
    if not isinstance(attr_type, TensorType):
        raise VerifyException(f"{op_name}: {role} must be a tensor, got {attr_type}")
    return tuple(attr_type.get_shape())


def show(shape: tuple[int, ...]) -> str:
    return "x".join("?" if d == DYNAMIC_INDEX else str(d) for d in shape)


def expect_shape(op_name: str, role: str, value: SSAValue, expected: tuple[int, ...], rule: str = "") -> None:
    shape = dims(op_name, role, value)
    if shape != expected:
        why = f" ({rule})" if rule else ""
        raise VerifyException(f"{op_name}: {role} has shape [{show(shape)}], expected [{show(expected)}]{why}")


def expect_float(op_name: str, role: str, value: SSAValue) -> None:
    assert isinstance(value.type, TensorType)
    element = str(value.type.element_type)
    if element not in FLOAT_ELEMENTS:
        raise VerifyException(f"{op_name}: {role} has element type {element}, expected one of f32, bf16, f16")


def weights(op_name: str, named: dict[str, SSAValue | None]) -> None:
    """Every present weight operand is a float tensor of static shape (weights are `tessera.graph.weight`s)."""
    for role, value in named.items():
        if value is not None:
            if DYNAMIC_INDEX in dims(op_name, role, value):
                raise VerifyException(f"{op_name}: {role} must have a static shape, got {value.type}")
            expect_float(op_name, role, value)


def activation(op_name: str, role: str, value: SSAValue, features: int | None = None) -> int:
    """A [tokens, features] float activation; returns its feature count."""
    shape = dims(op_name, role, value)
    if len(shape) != 2 or shape[1] == DYNAMIC_INDEX:
        raise VerifyException(f"{op_name}: {role} must be [tokens, features] with static features, got [{show(shape)}]")
    expect_float(op_name, role, value)
    if features is not None and shape[1] != features:
        raise VerifyException(f"{op_name}: {role} has {shape[1]} features, expected {features}")
    return shape[1]


def positive(op_name: str, **values: int) -> None:
    for name, value in values.items():
        if value <= 0:
            raise VerifyException(f"{op_name}: {name} must be positive, got {value}")


def divides(op_name: str, small: str, small_value: int, big: str, big_value: int) -> None:
    if big_value % small_value:
        raise VerifyException(f"{op_name}: {small} ({small_value}) must divide {big} ({big_value})")
