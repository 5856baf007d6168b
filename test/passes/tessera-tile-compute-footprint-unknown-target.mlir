// RUN: not tessera-opt %s -p tessera-tile-compute-footprint 2>&1 | FileCheck %s

// A target arch.py does not know has no fast-memory limit to check against.
// CHECK: tessera-opt: error: tessera.tile.kernel @elsewhere: unknown target 'tpu' (known: x86, gfx942, gfx90a, sm_90a)
tessera.tile.kernel @elsewhere attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, target = "tpu", tiles = {}} {
  tessera.tile.plan_elementwise "silu"
}
