// RUN: not tessera-opt %s -p tessera-tile-compute-footprint 2>&1 | FileCheck %s

// A target arch.py does not know has no fast-memory limit to check against.
// CHECK: tessera-opt: error: tessera.tile.kernel @elsewhere: unknown target 'tpu' (known: x86, gfx942, gfx90a, sm_90a)
tessera.tile.kernel @elsewhere attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "tpu", tiles = {}} {
^bb0(%t: index):
  %s = tessera.tile.alloc : memref<4xf32>
}
