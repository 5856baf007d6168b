// convert-tessera-tile-to-x86 on a large tessera.tile.mma (f32 [32, 16] x [16, 16]: 512 broadcast FMAs, above
// LOOPED_PRODUCT_FMAS): a and b are stored row by row into stack buffers placed at the kernel's start, and
// the k steps are one scf.for carrying the 32 accumulator rows, each step 32 scalar loads of a's column
// broadcast against one row of b — not 512 unrolled FMAs for LLVM to compile.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      func.func @mma_loop(
// CHECK-DAG:  %[[A:.*]] = memref.alloca() {alignment = 64 : i64} : memref<32x16xf32>
// CHECK-DAG:  %[[B:.*]] = memref.alloca() {alignment = 64 : i64} : memref<16x16xf32>
// CHECK:      vector.store %{{.*}}, %[[A]][%{{.*}}, %{{.*}}] : memref<32x16xf32>, vector<16xf32>
// CHECK:      vector.store %{{.*}}, %[[B]][%{{.*}}, %{{.*}}] : memref<16x16xf32>, vector<16xf32>
// CHECK:      scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(
// CHECK:        %[[ROW:.*]] = vector.load %[[B]][%[[K]], %{{.*}}] : memref<16x16xf32>, vector<16xf32>
// CHECK:        memref.load %[[A]][%{{.*}}, %[[K]]] : memref<32x16xf32>
// CHECK:        vector.fma %{{.*}}, %[[ROW]], %{{.*}} : vector<16xf32>
// CHECK:        scf.yield
// CHECK-NOT:  tessera.tile

// LLVM: define void @mma_loop(
// LLVM-COUNT-32: call <16 x float> @llvm.fmuladd.v16f32(
// LLVM-NOT:  call <16 x float> @llvm.fmuladd.v16f32(

builtin.module {
  tessera.tile.kernel @mma_loop attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {rows = 32 : i64}} {
  ^bb0(%x: memref<?x16xf32>, %w: memref<16x16xf32>, %y: memref<?x16xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c32 = arith.constant 32 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c32 : index
    %a = tessera.tile.load %x[%r, %c0] : memref<?x16xf32> -> !tessera.tile.tile<32x16xf32>
    %b = tessera.tile.load %w[%c0, %c0] : memref<16x16xf32> -> !tessera.tile.tile<16x16xf32>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<32x16xf32>
    %d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<32x16xf32>, !tessera.tile.tile<16x16xf32>, !tessera.tile.tile<32x16xf32> -> !tessera.tile.tile<32x16xf32>
    tessera.tile.store %d, %y[%r, %c0] : !tessera.tile.tile<32x16xf32>, memref<?x16xf32>
  }
}
