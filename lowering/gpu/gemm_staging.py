"""What the ROCDL MFMA GEMM (lowering/rocdl/gemm.py) stages its operands with: fetching 4 K-consecutive
elements of an operand row into registers, zero-filled outside the tensor, in the staged tile's element type;
and storing one result through the epilogue (row_scale, bias, then store / accumulate / relu2)."""

from __future__ import annotations

from tessera.lowering.rocdl.kernel_text import GpuKernelBuilder


def fetch_k4(
    b: GpuKernelBuilder,
    operand: str,
    dtype: str,
    element: str,
    k: int,
    row0: str,
    rows: str,
    row: str,
    kk: str,
    k0: str,
) -> str:
    """4 K-consecutive elements of global row row0 + row from k0 + kk (zeros outside rows / K), converted to
    the LDS tile's storage type."""
    global_row = b.add(row0, row)
    k_index = b.add(k0, kk)
    valid = b.let("p", f"arith.andi {b.lt(global_row, rows)}, {b.lt(k_index, b.index(k))} : i1")
    storage = "vector<4xi16>" if element == "bf16" else "vector<4xf32>"

    def loaded() -> list[str]:
        offset = b.to_i32(b.add(b.mul(global_row, b.index(k)), k_index))
        if k % 4 == 0:  # the 4 elements are in range together, and 4-aligned
            raw = b.gload_vector(operand, offset, dtype, 4)
            return [_convert_vector(b, raw, dtype, element)]
        values = []
        for i in range(4):
            inside = b.lt(b.add(k_index, b.index(i)), b.index(k))
            at = b.let("c", f"arith.addi {offset}, {b.i32(i)} : i32")
            clamped = b.let("c", f"arith.select {inside}, {at}, {offset} : i32")
            value = b.gload(operand, clamped, dtype)
            values.append(b.let("f", f"arith.select {inside}, {value}, {b.f32(0.0)} : f32"))
        return [_pack(b, values, element)]

    def zeros() -> list[str]:
        return [b.const("0" if element == "bf16" else "0.0", storage)]

    (fragment,) = b.if_yield(valid, [storage], loaded, zeros)
    return fragment


def _convert_vector(b: GpuKernelBuilder, raw: str, dtype: str, element: str) -> str:
    """4 loaded elements (as stored) -> 4 elements of the LDS tile's type."""
    if dtype == element:
        return raw
    if element == "bf16":  # f32 activations staged as bf16 operands (--precision bf16)
        values = [b.let("e", f"vector.extract {raw}[{i}] : f32 from vector<4xf32>") for i in range(4)]
        return _pack(b, values, "bf16")
    bits = [b.let("e", f"vector.extract {raw}[{i}] : i16 from vector<4xi16>") for i in range(4)]
    return _pack(b, [b.widen(bit) for bit in bits], "f32")


def _pack(b: GpuKernelBuilder, values: list[str], element: str) -> str:
    """4 f32 values as a vector of the tile's storage type (bf16 rounded to nearest even)."""
    if element == "bf16":
        bits = [b.narrow(value) for value in values]
        return b.let("v", f"vector.from_elements {', '.join(bits)} : vector<4xi16>")
    return b.let("v", f"vector.from_elements {', '.join(values)} : vector<4xf32>")


def store_result(
    b: GpuKernelBuilder,
    value: str,
    row: str,
    col: str,
    n: int,
    bias: bool,
    row_scale: bool,
    epilogue: str,
    y_dtype: str,
) -> None:
    if row_scale:
        value = b.fmul(value, b.gload("row_scale", b.to_i32(row)))
    if bias:
        value = b.fadd(value, b.gload("bias", b.to_i32(col)))
    b.store_epilogue(value, "y", b.to_i32(b.add(b.mul(row, b.index(n)), col)), epilogue, y_dtype)
