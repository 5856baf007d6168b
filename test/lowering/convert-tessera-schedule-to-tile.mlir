// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile' | FileCheck %s

// One kernel per distinct step: the two residual projections of width 32 from 32 share one kernel, and the
// prefill and decode programs share every kernel but the scan / the step. Grids before tiling: columns,
// heads, channels, or 0 (the call's token count).
// CHECK:     tessera.tile.kernel @embedding_hidden32_vocab64 attributes {kind = "embedding", {{.*}}parallel = "tokens", grid = 0 : i64}
// CHECK:     tessera.tile.kernel @rms_scale_eps1em05_hidden32 attributes {kind = "rms_scale", {{.*}}parallel = "tokens", grid = 0 : i64}
// CHECK:     tessera.tile.kernel @matmul_bias0_store_k32_n132_row_scale1 attributes {kind = "matmul", dims = {bias = 0 : i64, epilogue = "store", k = 32 : i64, n = 132 : i64, row_scale = 1 : i64}, parallel = "columns", grid = 132 : i64}
// CHECK:     tessera.tile.kernel @ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001 attributes {kind = "ssd_scan", {{.*}}parallel = "heads", grid = 4 : i64}
// CHECK:     tessera.tile.kernel @attention_p8_s32_h4_hkv2
// CHECK:     tessera.tile.kernel @ssd_step_p8_g2_h4_statef32_n16
// CHECK-NOT: tessera.tile.kernel

// CHECK-LABEL: func.func @prefill
// CHECK:       tessera.tile.launch @embedding_hidden32_vocab64 ins(
// CHECK:       tessera.tile.launch @matmul_bias0_accumulate_k32_n32 ins(
// CHECK:       tessera.tile.launch @matmul_bias0_accumulate_k32_n32 ins(
// CHECK-NOT:   tessera.schedule.matmul
// CHECK-LABEL: func.func @decode
// CHECK:       tessera.tile.launch @ssd_step_p8_g2_h4_statef32_n16
