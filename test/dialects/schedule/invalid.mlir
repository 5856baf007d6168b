// RUN: tessera-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// One case per verifier rule of tessera.schedule.

tessera.schedule.state @s : memref<?x4xf32> {kind = "ssm_state", layer = 0 : i64}
// CHECK: tessera.schedule.state @s: state must have a static shape

// -----

tessera.schedule.state @s : memref<4xf32> {kind = "scratch", layer = 0 : i64}
// CHECK: tessera.schedule.state @s: kind must be one of

// -----

func.func @f(%x: memref<?x8xf32>, %w: memref<16x4xf32>, %y: memref<?x16xf32>) {
  tessera.schedule.matmul ins(%x, %w : memref<?x8xf32>, memref<16x4xf32>) outs(%y : memref<?x16xf32>) {epilogue = "store"}
  func.return
}
// CHECK: tessera.schedule.matmul: weight is [16, 4], expected [16, 8] (y, x)

// -----

func.func @f(%x: memref<?x8xf32>, %w: memref<16x8xf32>, %y: memref<?x16xf32>) {
  tessera.schedule.matmul ins(%x, %w : memref<?x8xf32>, memref<16x8xf32>) outs(%y : memref<?x16xf32>) {epilogue = "gelu"}
  func.return
}
// CHECK: tessera.schedule.matmul: epilogue must be one of

// -----

func.func @f(%x: memref<?x8xf32>, %w: memref<8xf32>) {
  tessera.schedule.rmsnorm ins(%x, %w : memref<?x8xf32>, memref<8xf32>) outs(%x, %x : memref<?x8xf32>, memref<?x8xf32>) {epsilon = 1.0e-05 : f64}
  func.return
}
// CHECK: tessera.schedule.rmsnorm: expected 2 ins and 1 outs, got 2 and 2

// -----

func.func @f(%qkv: memref<?x60xf32>, %k: memref<16x2x8xf32>, %v: memref<16x2x8xf32>) {
  tessera.schedule.kv_append ins(%qkv : memref<?x60xf32>) outs(%k, %v : memref<16x2x8xf32>, memref<16x2x8xf32>) {num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64}
  func.return
}
// CHECK: tessera.schedule.kv_append: qkv must have 64 features ((H + 2*Hkv) * head_dim)

// -----

func.func @f(%qkv: memref<?x64xf32>) {
  %b = tessera.schedule.alloc : memref<8xf32>
  func.return
}
// CHECK: tessera.schedule.alloc: result must be a [tokens, features] buffer

// -----

func.func @f(%x: memref<?x8xf32>, %w: memref<16x8xf32>, %s: memref<?x1xf32>, %y: memref<?x16xf32>) {
  tessera.schedule.matmul ins(%x, %w, %s : memref<?x8xf32>, memref<16x8xf32>, memref<?x1xf32>) outs(%y : memref<?x16xf32>) {epilogue = "store", row_scale}
  func.return
}
// CHECK: tessera.schedule.matmul: row_scale must be a [tokens] buffer (memref<?xf32>)
