"""Horizontal sums across 512-bit vectors: the x86 kernels' reduction of 16 partial vectors at once."""

from __future__ import annotations

from tessera.lowering.mlir_text import MlirBuilder

_LANES = 16  # f32 lanes of one 512-bit vector
_VF32 = f"vector<{_LANES}xf32>"


def fold16(b: MlirBuilder, partials: list[str]) -> str:
    """16 vectors -> one vector of their 16 lane sums, in order. Each level pairs neighbours x, y holding n sums
    of w lanes each and adds the low and high halves of every sum's lanes: 2n sums of w/2 lanes (x's first)."""
    width = _LANES
    while len(partials) > 1:
        sums, half = _LANES // width, width // 2
        low = [s * width + i for s in range(sums) for i in range(half)]
        high = [lane + half for lane in low]
        low_mask = ", ".join(str(lane) for lane in [*low, *(_LANES + lane for lane in low)])
        high_mask = ", ".join(str(lane) for lane in [*high, *(_LANES + lane for lane in high)])
        folded = []
        for x, y in zip(partials[::2], partials[1::2], strict=True):
            lo = b.let("t", f"vector.shuffle {x}, {y} [{low_mask}] : {_VF32}, {_VF32}")
            hi = b.let("t", f"vector.shuffle {x}, {y} [{high_mask}] : {_VF32}, {_VF32}")
            folded.append(b.let("t", f"arith.addf {lo}, {hi} : {_VF32}"))
        partials, width = folded, half
    return partials[0]
