// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32 activation-dtype=bf16},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-avx512bf16-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-avx512bf16-mlir | %python -m tessera.lowering.x86.pipeline --avx512bf16 | FileCheck %s --check-prefix=LLVM

// Each bf16 GEMM's AVX-512 BF16 variant: kernels/gemm.py's vector blocking with k in pairs through
// convert-tessera-tile-to-x86{bf16_dot=true} (LowerMmaBF16Dot). Its weight is in pair panels
// [ceil(N/64), K/2, 128] bf16; each k step reads two columns of x, whose pair (one 32-bit word) is broadcast
// against a pair row of the panel, 16 columns at a time, into x86vector.avx512.dot (vdpbf16ps).
// CHECK-LABEL: func.func @matmul_bias0_store_k32_n132_xbf16__avx512bf16(%x: memref<?x32xbf16>, %w: memref<3x16x128xbf16>, %y: memref<?x132xf32>, %begin: index, %end: index)
// CHECK:         vector.bitcast {{.*}} : vector<2xi16> to vector<1xi32>
// CHECK:         vector.broadcast {{.*}} : i32 to vector<16xi32>
// CHECK:         vector.bitcast {{.*}} : vector<16xi32> to vector<32xbf16>
// CHECK:         x86vector.avx512.dot {{.*}} : vector<32xbf16> -> vector<16xf32>

// LLVM: define void @matmul_bias0_store_k32_n132_xbf16__avx512bf16(
// LLVM:   call <16 x float> @llvm.x86.avx512bf16.dpbf16ps.512(<16 x float> {{.*}}, <32 x bfloat> {{.*}}, <32 x bfloat> {{.*}})
