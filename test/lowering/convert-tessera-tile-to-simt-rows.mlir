// convert-tessera-tile-to-simt{arch=gfx942} on reductions of a matrix tile along either axis and a broadcast
// (a row softmax's shift): the [2, 16] tile's 32 elements are replicated over the 64 lanes (lane l holds
// element l mod 32). Each op stages its operand through a workgroup buffer between two barriers; a row
// reduction then reads its row (the first element, then an scf.for over the other 15 combining with
// arith.maximumf), a broadcast reads the element of its row, a column reduction walks its column. The
// replicated results are stored by the lanes that own them.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=gfx942}' | FileCheck %s

// CHECK:      %lds_reduce0: memref<2x16xf32, #gpu.address_space<workgroup>>, %lds_broadcast1: memref<2xf32, #gpu.address_space<workgroup>>, %lds_reduce2: memref<2x16xf32, #gpu.address_space<workgroup>>
// CHECK:      %v = llvm.load %{{.*}} : !llvm.ptr<1> -> f32
// CHECK:      "gpu.barrier"()
// CHECK:      memref.store %v, %lds_reduce0
// CHECK:      "gpu.barrier"()
// CHECK:      %[[FIRST:.*]] = memref.load %lds_reduce0[%{{.*}}, %{{.*}}]
// CHECK:      %rowmax = scf.for %[[I:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[MAX:.*]] = %[[FIRST]]) -> (f32) {
// CHECK:        %[[NEXT:.*]] = memref.load %lds_reduce0
// CHECK:        arith.maximumf %[[MAX]], %[[NEXT]] : f32
// CHECK:      memref.store %rowmax, %lds_broadcast1
// CHECK:      "gpu.barrier"()
// CHECK:      %peak = memref.load %lds_broadcast1[%{{.*}}] : memref<2xf32, #gpu.address_space<workgroup>>
// CHECK:      arith.subf %v, %peak : f32
// CHECK:      memref.store %v, %lds_reduce2
// CHECK:      %cols = scf.for
// CHECK:      %[[OWNS:.*]] = arith.cmpi ult, %{{.*}}, %{{.*}} : index
// CHECK:      scf.if %[[OWNS]] {
// CHECK:        llvm.store %cols, %{{.*}} : f32, !llvm.ptr<1>
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @rows attributes {kind = "softmax_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "gfx942", tiles = {rows = 2 : i64, threads = 64 : i64}} {
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
