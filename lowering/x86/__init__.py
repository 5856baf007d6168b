"""Kernel emitters for the x86 target: each module writes upstream MLIR (func, scf, arith, memref, vector,
math) for one family of Tile-IR kernels, with the tile sizes the Tile-IR chose."""
