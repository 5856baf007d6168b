// convert-tessera-tile-to-x86 on tessera.tile.scan (an inclusive scan: what the chunked SSD scan's log-decay
// cumulative sum needs): a vector scans in log2 steps, each lane combining with the lane `step` below it, a
// vector.shuffle bringing the combiner's identity (0 for add, the smallest integer for max) in below lane
// `step`; a matrix tile along axis 0 combines each row with the previous row's result. The GPUs refuse it
// in one line for a matrix tile (test/lowering/convert-tessera-tile-to-simt-scan.mlir: a rank-1 one).
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM
// RUN: not tessera-opt %s -p convert-tessera-tile-to-simt 2>&1 | FileCheck %s --check-prefix=SIMT

// CHECK:      %[[ZERO:.*]] = arith.constant dense<0.000000e+00> : vector<8xf32>
// CHECK-NEXT: %[[S1:.*]] = vector.shuffle %v, %[[ZERO]] [8, 0, 1, 2, 3, 4, 5, 6] : vector<8xf32>, vector<8xf32>
// CHECK-NEXT: %[[A1:.*]] = arith.addf %v, %[[S1]] : vector<8xf32>
// CHECK-NEXT: %[[S2:.*]] = vector.shuffle %[[A1]], %[[ZERO]] [8, 9, 0, 1, 2, 3, 4, 5] : vector<8xf32>, vector<8xf32>
// CHECK-NEXT: %[[A2:.*]] = arith.addf %[[A1]], %[[S2]] : vector<8xf32>
// CHECK-NEXT: %[[S4:.*]] = vector.shuffle %[[A2]], %[[ZERO]] [8, 9, 10, 11, 0, 1, 2, 3] : vector<8xf32>, vector<8xf32>
// CHECK-NEXT: %sums = arith.addf %[[A2]], %[[S4]] : vector<8xf32>
// CHECK:      %[[ROW0:.*]] = vector.extract %m[0] : vector<4xi32> from vector<3x4xi32>
// CHECK-NEXT: %[[ROW1:.*]] = vector.extract %m[1] : vector<4xi32> from vector<3x4xi32>
// CHECK-NEXT: %[[ROW2:.*]] = vector.extract %m[2] : vector<4xi32> from vector<3x4xi32>
// CHECK-NEXT: %[[MAX1:.*]] = arith.maxsi %[[ROW0]], %[[ROW1]] : vector<4xi32>
// CHECK-NEXT: arith.maxsi %[[MAX1]], %[[ROW2]] : vector<4xi32>
// CHECK:      %[[LOWEST:.*]] = arith.constant dense<-2147483648> : vector<4xi32>
// CHECK-NEXT: vector.shuffle %{{.*}}, %[[LOWEST]] [4, 0, 1, 2] : vector<4xi32>, vector<4xi32>
// CHECK-NOT:  tessera.tile

// LLVM: define void @scan(

// SIMT: tessera.tile.scan: a matrix tile's scan has no SIMT lowering yet

builtin.module {
  tessera.tile.kernel @scan attributes {kind = "scan_test", dims = {}, parallel = "tokens", grid = 0 : i64, target = "x86", tiles = {}} {
  ^bb0(%x: memref<?x8xf32>, %y: memref<?x8xf32>, %ints: memref<3x4xi32>, %peaks: memref<3x4xi32>, %t: index):
    %c0 = arith.constant 0 : index
    %v = tessera.tile.load %x[%t, %c0] : memref<?x8xf32> -> !tessera.tile.tile<8xf32>
    %sums = tessera.tile.scan "add" %v {axis = 0 : i64} : !tessera.tile.tile<8xf32> -> !tessera.tile.tile<8xf32>
    tessera.tile.store %sums, %y[%t, %c0] : !tessera.tile.tile<8xf32>, memref<?x8xf32>
    %m = tessera.tile.load %ints[%c0, %c0] : memref<3x4xi32> -> !tessera.tile.tile<3x4xi32>
    %running = tessera.tile.scan "max" %m {axis = 0 : i64} : !tessera.tile.tile<3x4xi32> -> !tessera.tile.tile<3x4xi32>
    %rows = tessera.tile.scan "max" %running {axis = 1 : i64} : !tessera.tile.tile<3x4xi32> -> !tessera.tile.tile<3x4xi32>
    tessera.tile.store %rows, %peaks[%c0, %c0] : !tessera.tile.tile<3x4xi32>, memref<3x4xi32>
  }
}
