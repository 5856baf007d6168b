// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM
// RUN: tessera-opt %t.tile.mlir -t x86-program | FileCheck %s --check-prefix=PROGRAM
// RUN: not tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule,convert-tessera-schedule-to-tile' -t x86-mlir 2>&1 | FileCheck %s --check-prefix=UNTILED

// Every kernel is an upstream func over memrefs with the token count dynamic, ending in its [begin, end) range;
// GEMMs read packed weight panels and accumulate in rows of nr lanes (LLVM splits them into 512-bit vectors).
// The kernels of kernels/ are built as IR, each lowered function printed for MLIR 22 and joined into one module
// on MLIR's own IR, in its custom form, the parameters named as Tile-IR names them
// (test/lowering/convert-tessera-tile-to-x86-dataflow.mlir shows their lowering).
// CHECK:      func.func @embedding_hidden32_vocab64(%ids: memref<?xi64>, %table: memref<64x32xf32>, %out: memref<?x32xf32>, %begin: index, %end: index)
// CHECK:      func.func @rms_scale_eps1em05_hidden32(%h: memref<?x32xf32>, %rstd: memref<?xf32>, %begin: index, %end: index)
// CHECK:      func.func @matmul_bias0_store_k32_n132_row_scale1(%x: memref<?x32xf32>, %w: memref<3x32x64xf32>, %row_scale: memref<?xf32>, %y: memref<?x132xf32>, %begin: index, %end: index)
// CHECK:      vector.fma {{.*}} : vector<64xf32>
// CHECK:      func.func @ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001({{.*}}: memref<?x132xf32>, {{.*}}: memref<?x96xf32>, {{.*}}: memref<4xf32>, {{.*}}: memref<4xf32>, {{.*}}: memref<4xf32>, {{.*}}: memref<4x8x16xf32>, {{.*}}: memref<?x32xf32>, %begin: index, %end: index)
// CHECK:      func.func @attention_p8_s32_h4_hkv2({{.*}}: memref<?x64xf32>, {{.*}}: memref<32x2x8xf32>, {{.*}}: memref<32x2x8xf32>, {{.*}}: memref<?x32xf32>, {{.*}}: index, %begin: index, %end: index)
// CHECK-NOT: tessera.

// LLVM: define void @matmul_bias0_store_k32_n132_row_scale1(
// LLVM: call <64 x float> @llvm.fmuladd.v64f32(
// LLVM: define void @ssd_step_p8_g2_h4_statef32_n16(

// The runtime's view: launches with their arguments, weights with their packing, state by name.
// PROGRAM:      "kernel": "embedding_hidden32_vocab64",
// The scan's range splits only at a group's heads (its tiles' `align`).
// PROGRAM:      "kernel": "ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001",
// PROGRAM:      "align": 2
// PROGRAM:      "layout": "gemm_panels",
// PROGRAM:      "layers.0.ssm_state": {
// PROGRAM-NEXT:   "shape": [

// UNTILED: tessera-opt: error: tessera.tile.kernel @embedding_hidden32_vocab64: no tiles chosen
