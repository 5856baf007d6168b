// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers' | FileCheck %s

// Per sequence: conv_state 96x3 + ssm_state 4x8x16 floats; K and V caches 32x2x8 floats each.
// CHECK: builtin.module attributes {tessera.arena_bytes_per_token = {prefill = [[ARENA:[0-9]+]] : i64, decode = [[ARENA]] : i64}, tessera.state_bytes = 3200 : i64, tessera.kv_cache_bytes = 4096 : i64}

// The residual stream lives in slot 0 for the whole program; the per-token 1/rms takes slot 1 and, once
// in_proj has read it, its slot is reused (and widened) by the conv output, then by the gated norm's.
// Each slot's width per token is the widest buffer it held: h (32 floats), then the 1/rms grown to the conv
// output (96 floats), zxbcdt (132 floats), ...
// CHECK-LABEL: func.func @prefill({{.*}} attributes {tessera.slot_bytes = array<i64: 128, 384, 528, {{.*}}>}
// CHECK:       tessera.schedule.alloc {slot = 0 : i64} : memref<?x32xf32>
// CHECK:       tessera.schedule.alloc {slot = 1 : i64} : memref<?xf32>
// CHECK:       tessera.schedule.alloc {slot = 2 : i64} : memref<?x132xf32>
// CHECK:       tessera.schedule.alloc {slot = 1 : i64} : memref<?x96xf32>
// CHECK:       tessera.schedule.alloc {slot = 3 : i64} : memref<?x32xf32>
// CHECK:       tessera.schedule.alloc {slot = 1 : i64} : memref<?x32xf32>
