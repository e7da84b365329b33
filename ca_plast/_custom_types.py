"""jaxtyping aliases shared by the package (one place, as in equinox/diffrax)."""

from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, PyTree

Scalar = Float[Array, ""]
ScalarLike = float | Float[ArrayLike, ""]
CalciumState = PyTree[Float[Array, "..."]]
Key = PRNGKeyArray

__all__ = [
    "Array",
    "ArrayLike",
    "Bool",
    "CalciumState",
    "Float",
    "Int",
    "Key",
    "PyTree",
    "Scalar",
    "ScalarLike",
]
