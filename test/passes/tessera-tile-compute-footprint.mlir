// RUN: tessera-opt %s -p tessera-tile-compute-footprint | FileCheck %s

// Fast-memory loads plus the accumulator: 6x64 + 64x32 floats loaded, a 6x32 accumulator:
// (384 + 2048 + 192) * 4 = 10496 bytes. The global store does not count.
// CHECK: tessera.tile.kernel @gemm attributes {{.*}}footprint = 10496 : i64}
tessera.tile.kernel @gemm attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, target = "x86", tiles = {}} {
  tessera.tile.plan_load "x" [6, 64] f32 {space = "cache"}
  tessera.tile.plan_load "weight" [64, 32] f32 {space = "cache"}
  tessera.tile.plan_mma m = 6 n = 32 k = 64(f32, f32) -> f32
  tessera.tile.plan_store "y" [6, 32] f32 {space = "global"}
}
