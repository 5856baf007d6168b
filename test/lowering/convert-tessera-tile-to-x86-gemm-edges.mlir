// convert-tessera-tile-to-x86 on the pieces kernels/gemm.py adds: a column tile [rows, 1] (what an mma
// broadcasts) is one scalar memref.load per row, so that no vector of bf16 elements is formed; a bf16 tile
// stored up to a bound is one unmasked store where the whole tile lies before the bound, else its elements
// before the bound one by one as i16 bits through the buffer's pointer (a masked bf16 store would reach
// LLVM's f32 round trip, the __truncsfbf2 libcall, on x86 without AVX512-BF16).
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      memref.load %x[%r, %k] : memref<?x4xbf16>
// CHECK:      arith.bitcast %{{.*}} : bf16 to i16
// CHECK:      memref.load %x[%{{.*}}, %k] : memref<?x4xbf16>
// CHECK-NOT:  vector.transfer_read %x
// CHECK:      %[[WHOLE:.*]] = arith.cmpi ule, %{{.*}}, %c10 : index
// CHECK:      scf.if %[[WHOLE]] {
// CHECK:        vector.transfer_write %{{.*}}, %y[%r, %c0] {in_bounds = [true, true]} : vector<2x16xbf16>, memref<?x10xbf16>
// CHECK:      } else {
// CHECK:        extract_aligned_pointer_as_index"(%y)
// CHECK:        llvm.inttoptr
// CHECK:        scf.for
// CHECK:          vector.extract %{{.*}}[0, %{{.*}}] : i16 from vector<2x16xi16>
// CHECK:          llvm.store %{{.*}}, %{{.*}} : i16, !llvm.ptr
// CHECK:        scf.for
// CHECK:          vector.extract %{{.*}}[1, %{{.*}}] : i16 from vector<2x16xi16>
// CHECK-NOT:  vector.maskedstore
// CHECK-NOT:  tessera.tile

// LLVM:       define void @edges(
// LLVM-NOT:   store bfloat
// LLVM:       store i16

builtin.module {
  tessera.tile.kernel @edges attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {rows = 2 : i64}} {
  ^bb0(%x: memref<?x4xbf16>, %w: memref<4x16xbf16>, %y: memref<?x10xbf16>, %t: index):
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    %c10 = arith.constant 10 : index
    %k = arith.constant 3 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c2 : index
    %a = tessera.tile.load %x[%r, %k] : memref<?x4xbf16> -> !tessera.tile.tile<2x1xbf16>
    %b = tessera.tile.load %w[%k, %c0] : memref<4x16xbf16> -> !tessera.tile.tile<1x16xbf16>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x16xf32>
    %d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<2x1xbf16>, !tessera.tile.tile<1x16xbf16>, !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xf32>
    %e = tessera.tile.convert %d : !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xbf16>
    tessera.tile.store %e, %y[%r, %c0] bound %c10 {bound_axes = array<i64: 1>} : !tessera.tile.tile<2x16xbf16>, memref<?x10xbf16>
  }
}
