// convert-tessera-tile-to-x86 on tessera.tile.mma with its right operand given transposed (rows of keys against
// rows of queries) and accesses masked along their rows (bound_axis 0: the token count cuts the last row
// block): each element of the accumulator gains the dot product of a row of a and a row of b, their product
// summed by a reassociated vector.reduction; the rows of a row gather into one vector by vector.from_elements.
// The row mask is vector.create_mask(n - r, the whole width).
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      %[[LEFT:.*]] = arith.subi %n, %r : index
// CHECK:      %[[MASK:.*]] = vector.create_mask %[[LEFT]], %{{.*}} : vector<2x16xi1>
// CHECK:      %a = vector.transfer_read %x[%r, %c0], %{{.*}}, %[[MASK]] : memref<?x16xf32>, vector<2x16xf32>
// CHECK:      %[[A0:.*]] = vector.extract %a[0] : vector<16xf32> from vector<2x16xf32>
// CHECK:      %[[B0:.*]] = vector.extract %b[0] : vector<16xf32> from vector<3x16xf32>
// CHECK:      %[[P:.*]] = arith.mulf %[[A0]], %[[B0]] : vector<16xf32>
// CHECK:      vector.reduction <add>, %[[P]] fastmath<reassoc,contract> : vector<16xf32> into f32
// CHECK:      "vector.from_elements"(%{{.*}}, %{{.*}}, %{{.*}}) : (f32, f32, f32) -> vector<3xf32>
// CHECK:      vector.create_mask %{{.*}}, %{{.*}} : vector<2x3xi1>
// CHECK:      vector.transfer_write %d, %y[%r, %c0], %{{.*}} : vector<2x3xf32>, memref<?x3xf32>
// CHECK-NOT:  tessera.tile

// LLVM: define void @mma_t(
// LLVM: call {{.*}}float @llvm.vector.reduce.fadd.v16f32(

builtin.module {
  tessera.tile.kernel @mma_t attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {rows = 2 : i64}} {
  ^bb0(%x: memref<?x16xf32>, %w: memref<3x16xf32>, %y: memref<?x3xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c2 : index
    %n = memref.dim %x, %c0 : memref<?x16xf32>
    %a = tessera.tile.load %x[%r, %c0] bound %n {bound_axes = array<i64: 0>} : memref<?x16xf32> -> !tessera.tile.tile<2x16xf32>
    %b = tessera.tile.load %w[%c0, %c0] : memref<3x16xf32> -> !tessera.tile.tile<3x16xf32>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<2x3xf32>
    %d = tessera.tile.mma %a, %b, %c {rhs_transposed} : !tessera.tile.tile<2x16xf32>, !tessera.tile.tile<3x16xf32>, !tessera.tile.tile<2x3xf32> -> !tessera.tile.tile<2x3xf32>
    tessera.tile.store %d, %y[%r, %c0] bound %n {bound_axes = array<i64: 0>} : !tessera.tile.tile<2x3xf32>, memref<?x3xf32>
  }
}
