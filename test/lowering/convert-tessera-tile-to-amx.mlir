// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | %python -m tessera.lowering.x86.pipeline --amx | FileCheck %s --check-prefix=LLVM

// convert-tessera-tile-to-amx: each GEMM's AMX variant takes the x86 GEMM's arguments, its weight as bf16
// VNNI tiles [ceil(N/16), ceil(K/32)*16, 32]; a K loop of tile loads into tdpbf16ps on 16x16 f32 tiles.
// CHECK-LABEL: func.func @matmul_bias0_store_k32_n132_row_scale1__amx(%x: memref<?x32xf32>, %w: memref<9x16x32xbf16>, %row_scale: memref<?xf32>, %y: memref<?x132xf32>, %begin: index, %end: index)
// CHECK:         amx.tile_zero : !amx.tile<16x16xf32>
// CHECK:         amx.tile_load {{.*}} into !amx.tile<16x32xbf16>
// CHECK:         amx.tile_mulf {{.*}} : !amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>
// CHECK:         amx.tile_store

// LLVM: define void @matmul_bias0_store_k32_n132_row_scale1__amx(
// LLVM:   call x86_amx @llvm.x86.tileloadd64.internal(
// LLVM:   call x86_amx @llvm.x86.tdpbf16ps.internal(
// LLVM:   call void @llvm.x86.tilestored64.internal(
