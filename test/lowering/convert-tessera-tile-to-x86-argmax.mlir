// convert-tessera-tile-to-x86 on an arg-max (the shape of kernels/moe.py's router): tessera.tile.iota is a
// constant vector of positions, a float max halves its vector with maxnumf while the width is even (LLVM
// would expand a reduction of maxnumf that may see NaN lane by lane), an integer reduce is vector.reduction
// <minsi> (no fastmath: integers are exact), and the map's comparison and select become their vector forms
// (vector<16xi1> masks).
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      %at = arith.constant dense<[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]> : vector<16xi32>
// CHECK:      %[[LOW:.*]] = vector.shuffle %v, %v [0, 1, 2, 3, 4, 5, 6, 7] : vector<16xf32>, vector<16xf32>
// CHECK-NEXT: %[[HIGH:.*]] = vector.shuffle %v, %v [8, 9, 10, 11, 12, 13, 14, 15] : vector<16xf32>, vector<16xf32>
// CHECK-NEXT: arith.maxnumf %[[LOW]], %[[HIGH]] : vector<8xf32>
// CHECK:      %[[ONE:.*]] = arith.maxnumf %{{.*}}, %{{.*}} : vector<1xf32>
// CHECK-NEXT: %top = vector.reduction <maxnumf>, %[[ONE]] fastmath<reassoc,contract> : vector<1xf32> into f32
// CHECK:      %[[IS_TOP:.*]] = arith.cmpf oeq, %v, %{{.*}} : vector<16xf32>
// CHECK:      %holders = arith.select %[[IS_TOP]], %at, %{{.*}} : vector<16xi1>, vector<16xi32>
// CHECK:      %where = vector.reduction <minsi>, %holders : vector<16xi32> into i32
// CHECK:      arith.extsi %where : i32 to i64
// CHECK-NOT:  tessera.tile

// LLVM: define void @argmax(
// LLVM: call i32 @llvm.vector.reduce.smin.v16i32(

builtin.module {
  tessera.tile.kernel @argmax attributes {kind = "moe_router", dims = {num_experts = 16 : i64}, parallel = "tokens", grid = 0 : i64, target = "x86", tiles = {block = 16 : i64}} {
  ^bb0(%x: memref<?x16xf32>, %ids: memref<?x1xi64>, %t: index):
    %c0 = arith.constant 0 : index
    %v = tessera.tile.load %x[%t, %c0] : memref<?x16xf32> -> !tessera.tile.tile<16xf32>
    %at = tessera.tile.iota : !tessera.tile.tile<16xi32>
    %top = tessera.tile.reduce "max" %v {axis = 0 : i64} : !tessera.tile.tile<16xf32> -> f32
    %holders = tessera.tile.map %v, %at, %top : !tessera.tile.tile<16xf32>, !tessera.tile.tile<16xi32>, f32 -> !tessera.tile.tile<16xi32> {
    ^bb1(%e: f32, %a: i32, %m: f32):
      %never = arith.constant 2147483647 : i32
      %is_top = arith.cmpf oeq, %e, %m : f32
      %h = arith.select %is_top, %a, %never : i32
      tessera.tile.yield %h : i32
    }
    %where = tessera.tile.reduce "min" %holders {axis = 0 : i64} : !tessera.tile.tile<16xi32> -> i32
    %id = arith.extsi %where : i32 to i64
    tessera.tile.store %id, %ids[%t, %c0] : i64, memref<?x1xi64>
  }
}
