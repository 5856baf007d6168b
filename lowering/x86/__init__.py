"""The x86 target's toolchain leg: pipeline.py takes the upstream MLIR that convert-tessera-tile-to-x86 builds
(func/scf/arith/memref/vector/math, amx) to LLVM IR and a loadable library."""
