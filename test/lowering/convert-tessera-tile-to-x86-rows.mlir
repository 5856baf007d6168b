// convert-tessera-tile-to-x86 on reductions of a matrix tile and a broadcast (attention's row statistics):
// along axis 1 each row's reduction is inserted into the result (a max halves the row with arith.maxnumf
// down to one lane, whose vector.reduction is its value); along axis 0 the rows combine elementwise
// (arith.maxnumf); a broadcast along a new trailing axis gives each row its element.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      %v = vector.transfer_read %s[%r, %c0], %{{.*}} {in_bounds = [true, true]} : memref<?x16xf32>, vector<2x16xf32>
// CHECK:      %[[ROW0:.*]] = vector.extract %v[0] : vector<16xf32> from vector<2x16xf32>
// CHECK:      %[[LOW:.*]] = vector.shuffle %[[ROW0]], %[[ROW0]] [0, 1, 2, 3, 4, 5, 6, 7] : vector<16xf32>, vector<16xf32>
// CHECK:      %[[LANE:.*]] = arith.maxnumf %{{.*}}, %{{.*}} : vector<1xf32>
// CHECK-NEXT: %[[MAX0:.*]] = vector.reduction <maxnumf>, %[[LANE]] fastmath<reassoc,contract> : vector<1xf32> into f32
// CHECK:      %[[PART:.*]] = vector.insert %[[MAX0]], %{{.*}} [0] : f32 into vector<2xf32>
// CHECK:      %rowmax = vector.insert %{{.*}}, %[[PART]] [1] : f32 into vector<2xf32>
// CHECK:      %[[M0:.*]] = vector.extract %rowmax[0] : f32 from vector<2xf32>
// CHECK:      vector.broadcast %[[M0]] : f32 to vector<16xf32>
// CHECK:      %shifted = arith.subf %v, %peak : vector<2x16xf32>
// CHECK:      %cols = arith.maxnumf %{{.*}}, %{{.*}} : vector<16xf32>
// CHECK-NOT:  tessera.tile

// LLVM: define void @rows(
// LLVM-COUNT-2: call <8 x float> @llvm.maxnum.v8f32(
// LLVM: call <16 x float> @llvm.maxnum.v16f32(

builtin.module {
  tessera.tile.kernel @rows attributes {kind = "softmax_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {rows = 2 : i64}} {
  ^bb0(%s: memref<?x16xf32>, %p: memref<?x16xf32>, %colmax: memref<?x16xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    %r = arith.muli %t, %c2 : index
    %v = tessera.tile.load %s[%r, %c0] : memref<?x16xf32> -> !tessera.tile.tile<2x16xf32>
    %rowmax = tessera.tile.reduce "max" %v {axis = 1 : i64} : !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2xf32>
    %peak = tessera.tile.broadcast %rowmax {axis = 1 : i64} : !tessera.tile.tile<2xf32> -> !tessera.tile.tile<2x16xf32>
    %shifted = tessera.tile.map %v, %peak : !tessera.tile.tile<2x16xf32>, !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<2x16xf32> {
    ^bb1(%e: f32, %m: f32):
      %d = arith.subf %e, %m : f32
      tessera.tile.yield %d : f32
    }
    tessera.tile.store %shifted, %p[%r, %c0] : !tessera.tile.tile<2x16xf32>, memref<?x16xf32>
    %cols = tessera.tile.reduce "max" %v {axis = 0 : i64} : !tessera.tile.tile<2x16xf32> -> !tessera.tile.tile<16xf32>
    tessera.tile.store %cols, %colmax[%t, %c0] : !tessera.tile.tile<16xf32>, memref<?x16xf32>
  }
}
