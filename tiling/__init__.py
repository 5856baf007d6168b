"""Tiling policies: for each target and kernel kind, the tile sizes (and, for kernels still emitted by hand,
the planned tile steps) that `tessera-tile-choose-tiles` writes into Tile-IR. One module per target family:
x86.py (with the GEMM's blocking, x86_gemm.py) and gpu*.py (one policy per kind for every GPU, reading the
arch table, arch.py). Policies choose; the lowerings only read what was chosen (IREE's "choose, then lower").
"""
