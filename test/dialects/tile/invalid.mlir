// RUN: tessera-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// One case per verifier rule of tessera.tile.

// Target facts (fast-memory limits, known targets) are arch.py's, checked by tessera-tile-compute-footprint
// (test/passes/tessera-tile-compute-footprint-over-limit.mlir); the dialect checks what holds on any target.
tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = 4 : i64, footprint = -1 : i64} {
^bb0(%t: index):
}
// CHECK: tessera.tile.kernel @k: footprint must be >= 0

// -----

tessera.tile.kernel @k attributes {kind = "matmul", dims = {}, parallel = "panels", grid = -1 : i64} {
^bb0(%t: index):
}
// CHECK: tessera.tile.kernel @k: grid must be >= 0

// -----

// A dataflow body: buffers, then the program id (index).
tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: f32):
}
// CHECK: tessera.tile.kernel @k: scalars and the program id are index arguments, got f32

// -----

tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: index):
  %v = tessera.tile.load %h[%t] : memref<?x64xf32> -> !tessera.tile.tile<16xf32>
}
// CHECK: tessera.tile.load: 1 indices into a rank-2 buffer

// -----

tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %h[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<16xf32>
  %s = tessera.tile.reduce "mul" %v {axis = 0 : i64} : !tessera.tile.tile<16xf32> -> f32
}
// CHECK: tessera.tile.reduce: combiner must be one of ('add', 'max', 'min'), got 'mul'

// -----

tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %h[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<16xf32>
  %s = tessera.tile.scan "add" %v {axis = 1 : i64} : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<16xf32>
}
// CHECK: tessera.tile.scan: axis 1 of a rank-1 tile

// -----

tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %h[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<16xf32>
  %s = tessera.tile.scan "add" %v {axis = 0 : i64} : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<8xf32>
}
// CHECK: tessera.tile.scan: a scan of !tessera.tile.tile<16xf32> gives the same type, not !tessera.tile.tile<8xf32>

// -----

tessera.tile.kernel @k attributes {kind = "rms_scale", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%h: memref<?x64xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %h[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<16xf32>
  %w = tessera.tile.map %v : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<16xf32> {
  ^bb1(%x: f32, %y: f32):
    tessera.tile.yield %x : f32
  }
}
// CHECK: tessera.tile.map: 1 inputs but 2 block arguments

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%w: memref<64x4xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %w[%c0, %c0] {axes = array<i64: 2>} : memref<64x4xf32> -> !tessera.tile.tile<16xf32>
}
// CHECK: tessera.tile.load: axes [2] must name 1 distinct dimensions of a rank-2 buffer

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%w: memref<64x4xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %w[%c0, %c0] {axes = array<i64: 0>} : memref<64x4xf32> -> f32
}
// CHECK: tessera.tile.load: a scalar access has no bound or axes

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%w: memref<64x4xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %w[%c0, %c0] {bound_axes = array<i64: 0>} : memref<64x4xf32> -> !tessera.tile.tile<2x4xf32>
}
// CHECK: tessera.tile.load: bound_axes [0] must name a distinct tile axis per bound (0)

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%w: memref<64x4xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %w[%c0, %c0] bound %t {bound_axes = array<i64: 2>} : memref<64x4xf32> -> !tessera.tile.tile<2x4xf32>
}
// CHECK: tessera.tile.load: bound_axes [2] must name a distinct tile axis per bound (1)

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%w: memref<64x4xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %w[%c0, %c0] bound %t, %t : memref<64x4xf32> -> !tessera.tile.tile<2x4xf32>
}
// CHECK: tessera.tile.load: 2 bounds need bound_axes

// -----

tessera.tile.kernel @k attributes {kind = "conv_silu", dims = {}, parallel = "channel_panels", grid = 1 : i64} {
^bb0(%n: index, %t: index):
  %s = tessera.tile.alloc : memref<?x4xf32>
}
// CHECK: tessera.tile.alloc: a scratch buffer has a static shape, got memref<?x4xf32>

// -----

tessera.tile.kernel @k attributes {kind = "moe_router", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%t: index):
  %p = tessera.tile.iota : !tessera.tile.tile<16xf32>
}
// CHECK: tessera.tile.iota: an iota is a rank-1 tile of i32, not !tessera.tile.tile<16xf32>

// -----

tessera.tile.kernel @k attributes {kind = "moe_router", dims = {}, parallel = "tokens", grid = 0 : i64} {
^bb0(%x: memref<?x16xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %v = tessera.tile.load %x[%t, %c0] : memref<?x16xf32> -> !tessera.tile.tile<16xf32>
  %m = arith.constant 1.0 : f32
  %y = tessera.tile.map %v : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<16xf32> {
  ^bb1(%e: f32):
    %s = arith.mulf %e, %m : f32
    tessera.tile.yield %s : f32
  }
}
// CHECK: Operation using value defined out of its IsolatedFromAbove parent

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%t: index):
  %zero = arith.constant 0.0 : f32
  %a = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x4xf32>
  %b = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<8x16xf32>
  %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x16xf32>
  %d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<2x4xf32>, !tessera.tile.tile<8x16xf32>, !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xf32>
}
// CHECK: tessera.tile.mma: 2x4 times 8x16 does not accumulate into 2x16

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%t: index):
  %zero = arith.constant 0.0 : f32
  %a = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x4xf32>
  %b = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<4x16xf32>
  %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x16xf32>
  %d = tessera.tile.mma %a, %b, %c {rhs_transposed} : !tessera.tile.tile<2x4xf32>, !tessera.tile.tile<4x16xf32>, !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xf32>
}
// CHECK: tessera.tile.mma: 2x4 times 16x4 (given transposed) does not accumulate into 2x16

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%t: index):
  %zero = arith.constant 0.0 : f32
  %a = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x4xf32>
  %b = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<4x16xf32>
  %h = arith.constant 0.0 : bf16
  %c = tessera.tile.splat %h : bf16 -> !tessera.tile.tile<2x16xbf16>
  %d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<2x4xf32>, !tessera.tile.tile<4x16xf32>, !tessera.tile.tile<2x16xbf16> -> !tessera.tile.tile<2x16xbf16>
}
// CHECK: tessera.tile.mma: the accumulator is f32, got !tessera.tile.tile<2x16xbf16>

// -----

tessera.tile.kernel @k attributes {kind = "softmax_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%t: index):
  %zero = arith.constant 0.0 : f32
  %rows = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<4xf32>
  %m = tessera.tile.broadcast %rows {axis = 0 : i64} : !tessera.tile.tile<4xf32> -> !tessera.tile.tile<4x64xf32>
}
// CHECK: tessera.tile.broadcast: !tessera.tile.tile<4xf32> does not broadcast to !tessera.tile.tile<4x64xf32> along axis 0

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%x: memref<?x64xbf16>, %t: index):
  %c0 = arith.constant 0 : index
  %a = tessera.tile.load %x[%t, %c0] {async} : memref<?x64xbf16> -> !tessera.tile.tile<16x64xbf16>
}
// CHECK: tessera.tile.load: an async load stages a matrix tile in shared or lds

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%x: memref<?x64xbf16>, %t: index):
  %c0 = arith.constant 0 : index
  %s = tessera.tile.alloc : memref<16x64xbf16>
  %a = tessera.tile.load %s[%c0, %c0] {space = "shared", async} : memref<16x64xbf16> -> !tessera.tile.tile<16x64xbf16>
}
// CHECK: tessera.tile.load: an async load reads a launch operand (a copy engine's descriptor)

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%x: memref<?x64xbf16>, %t: index):
  %c0 = arith.constant 0 : index
  %a = tessera.tile.load %x[%t, %c0] {space = "shared", async, swizzle = 128 : i64} : memref<?x64xbf16> -> !tessera.tile.tile<16x32xbf16>
}
// CHECK: tessera.tile.load: a 128-byte swizzle needs rows of 128 bytes, got 64

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%x: memref<?x64xbf16>, %t: index):
  %c0 = arith.constant 0 : index
  %a = tessera.tile.load %x[%t, %c0] {swizzle = 48 : i64} : memref<?x64xbf16> -> !tessera.tile.tile<16x64xbf16>
}
// CHECK: tessera.tile.load: swizzle is one of (32, 64, 128) bytes, of a tile staged in the scratchpad

// -----

tessera.tile.kernel @k attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64} {
^bb0(%t: index):
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %c1 step %c1 {
  } {tessera.tile.stages = 0 : i64}
}
// CHECK: tessera.tile.kernel @k: tessera.tile.stages is a count >= 1 of pipeline stages, on an scf.ForOp
