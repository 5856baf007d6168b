// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-amx-mlir | %python -m tessera.lowering.x86.pipeline --amx | FileCheck %s --check-prefix=LLVM

// Each GEMM's AMX variant: kernels/gemm.py's matrix-unit blocking through convert-tessera-tile-to-x86{amx=true}.
// It takes the x86 GEMM's arguments, its weight in k pairs [ceil(N/16), ceil(K/32)*16, 32] bf16, and runs
// the range [begin, end) of the GEMM's panels itself: x (f32 here) staged once as bf16 in groups of up to 512
// rows, the weight panels in blocks that stay in L2 while a group passes them, then K loops of tile loads into
// tdpbf16ps on 16x16 f32 tiles (four accumulators for a 32 x 32 block).
// CHECK-LABEL: func.func @matmul_bias0_store_k32_n132_row_scale1__amx(%x: memref<?x32xf32>, %w: memref<9x16x32xbf16>, %row_scale: memref<?xf32>, %y: memref<?x132xf32>, %begin: index, %end: index)
// CHECK:         memref.alloca() {{.*}} : memref<32x32xf32>
// CHECK:         %[[XS:.*]] = memref.alloca() {{.*}} : memref<512x32xbf16>
// CHECK:         amx.tile_zero : !amx.tile<16x16xf32>
// CHECK:         amx.tile_load %[[XS]][{{.*}}] : memref<512x32xbf16> into !amx.tile<16x32xbf16>
// CHECK:         amx.tile_load %w[{{.*}}] : memref<9x16x32xbf16> into !amx.tile<16x32xbf16>
// CHECK:         amx.tile_mulf {{.*}} : !amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>
// CHECK:         amx.tile_store {{.*}} : memref<32x32xf32>, !amx.tile<16x16xf32>

// LLVM: define void @matmul_bias0_store_k32_n132_row_scale1__amx(
// LLVM:   call x86_amx @llvm.x86.tileloadd64.internal(
// LLVM:   call x86_amx @llvm.x86.tdpbf16ps.internal(
// LLVM:   call void @llvm.x86.tilestored64.internal(
