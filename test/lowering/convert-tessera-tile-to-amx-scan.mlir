// RUN: tessera-opt %root/test/inputs/mamba2_amx_scan.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | %python -m tessera.lowering.x86.pipeline --amx | FileCheck %s --check-prefix=LLVM
// RUN: tessera-opt %root/graph_examples/mamba2.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16}' -t x86-amx-mlir | FileCheck %s --check-prefix=UNFIT

// A bf16 artifact's SSD scan has an AMX variant beside its GEMMs' (kernels/ssd_matrix.py): the vector scan's
// arguments and range of heads; its products loops of tile loads into tdpbf16ps on 16x16 f32 tiles, their
// right operands built in k pairs by interleaving two bf16 rows (one shuffle).
// CHECK-LABEL: func.func @ssd_scan_l16_p16_g1_h2_statef32_n32_dtmin0p001__amx(%zxbcdt: memref<?x130xf32>, %xbc: memref<?x96xf32>, %dt_bias: memref<2xf32>, %A_log: memref<2xf32>, %D: memref<2xf32>, %ssm_state: memref<2x16x32xf32>, %y: memref<?x32xf32>, %begin: index, %end: index)
// CHECK:         vector.shuffle {{.*}} [0, 32, 1, 33, 2, 34,
// CHECK:         amx.tile_zero
// CHECK:         amx.tile_load
// CHECK:         amx.tile_mulf
// CHECK:         amx.tile_store
// CHECK-LABEL: func.func @matmul_bias0_accumulate_k32_n32__amx(

// LLVM: define void @ssd_scan_l16_p16_g1_h2_statef32_n32_dtmin0p001__amx(
// LLVM:   call x86_amx @llvm.x86.tdpbf16ps.internal(

// A scan whose heads are not whole tiles (P = 8, N = 16) keeps the vector form only: no variant.
// UNFIT-NOT: ssd_scan{{.*}}__amx
