// RUN: tessera-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// One case per verifier rule of tessera.tile.

// A footprint over the target's fast-memory limit (x86: 1 MiB of L2 per core).
tessera.tile.kernel @big attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, target = "x86", tiles = {}, footprint = 2000000 : i64} {
  tessera.tile.plan_load "weight" [1000, 500] f32 {space = "cache"}
}
// CHECK: tessera.tile.kernel @big: footprint 2000000 bytes exceeds the x86 limit of 1048576 bytes

// -----

tessera.tile.kernel @lds attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, target = "gfx942", tiles = {}, footprint = 70000 : i64} {
  tessera.tile.plan_elementwise "silu"
}
// CHECK: tessera.tile.kernel @lds: footprint 70000 bytes exceeds the gfx942 limit of 65536 bytes

// -----

tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, target = "tpu", tiles = {}, footprint = 1 : i64} {
  tessera.tile.plan_elementwise "silu"
}
// CHECK: tessera.tile.kernel @k: unknown target 'tpu'

// -----

tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = -1 : i64} {
  tessera.tile.plan_elementwise "silu"
}
// CHECK: tessera.tile.kernel @k: grid must be >= 0

// -----

tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 1 : i64} {
  tessera.tile.plan_load "x" [4, 0] f32 {space = "cache"}
}
// CHECK: tessera.tile.plan_load 'x': tile dimensions must be positive

// -----

tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 1 : i64} {
  tessera.tile.plan_load "x" [4, 4] f32 {space = "texture"}
}
// CHECK: tessera.tile.plan_load 'x': space must be one of
