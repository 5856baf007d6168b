// convert-tessera-tile-to-x86 on tessera.tile.mma (bf16 operands): a matrix tile is a 2-D vector whose rows
// are read by vector.transfer_read (vector-to-scf unrolls it into row loads); for each k, each accumulator
// row gains a[m, k] (widened from its bf16 bits, broadcast) times row k of b (its bits zero-extended and
// shifted into the high half) in one vector.fma, which LLVM receives as llvm.fmuladd.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      vector.transfer_read %x[%r, %c0], %{{.*}} {in_bounds = [true, true]} : memref<?x2xbf16>, vector<2x2xbf16>
// CHECK:      vector.transfer_read %w[%c0, %c0], %{{.*}} {in_bounds = [true, true]} : memref<2x16xbf16>, vector<2x16xbf16>
// CHECK:      %c = vector.broadcast %zero : f32 to vector<2x16xf32>
// CHECK:      %[[ROW0:.*]] = vector.extract %c[0] : vector<16xf32> from vector<2x16xf32>
// CHECK:      %[[B0:.*]] = vector.extract %b[0] : vector<16xi16> from vector<2x16xi16>
// CHECK:      "arith.extui"(%[[B0]]) : (vector<16xi16>) -> vector<16xi32>
// CHECK:      %[[A00:.*]] = vector.extract %a[0, 0] : i16 from vector<2x2xi16>
// CHECK:      %[[SUM:.*]] = vector.fma %{{.*}}, %{{.*}}, %[[ROW0]] : vector<16xf32>
// CHECK:      vector.fma %{{.*}}, %{{.*}}, %[[SUM]] : vector<16xf32>
// CHECK:      vector.insert %{{.*}}, %c [0] : vector<16xf32> into vector<2x16xf32>
// CHECK:      vector.transfer_write %{{.*}}, %y[%r, %c0] {in_bounds = [true, true]} : vector<2x16xf32>, memref<?x16xf32>
// CHECK-NOT:  tessera.tile

// LLVM: define void @mma(
// LLVM-COUNT-4: call <16 x float> @llvm.fmuladd.v16f32(

builtin.module {
  tessera.tile.kernel @mma attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {rows = 2 : i64}} {
  ^bb0(%x: memref<?x2xbf16>, %w: memref<2x16xbf16>, %y: memref<?x16xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c2 : index
    %a = tessera.tile.load %x[%r, %c0] : memref<?x2xbf16> -> !tessera.tile.tile<2x2xbf16>
    %b = tessera.tile.load %w[%c0, %c0] : memref<2x16xbf16> -> !tessera.tile.tile<2x16xbf16>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x16xf32>
    %d = tessera.tile.mma %a, %b, %c : !tessera.tile.tile<2x2xbf16>, !tessera.tile.tile<2x16xbf16>, !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xf32>
    tessera.tile.store %d, %y[%r, %c0] : !tessera.tile.tile<2x16xf32>, memref<?x16xf32>
  }
}
