// convert-tessera-tile-to-simt{arch=sm_90a} on tessera.tile.mma (bf16 operands): a [2, 2] tile of 4 elements
// is replicated over the 32 lanes (lane l holds element l mod 4; lanes below 4 own them); the [2, 16] b tile
// holds one element per lane. mma stages both operands through workgroup buffers (a barrier, the owners'
// stores, a barrier; a's rows padded to 4 elements, 8 bytes: lanes reading down a column of different rows
// hit different banks), then each lane walks k for its elements of the accumulator, which lives in a Blocked
// lane grid (2 x 16 lanes: lane l holds row l / 16, column l mod 16): per k it reads its row of a and its
// column of b once, bf16 widened exactly (its bits the high half of an f32), each product added to the
// running sum, contractible into one multiply-add. The store walks the same grid.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:      ^bb0(%x: !llvm.ptr<1>, %w: !llvm.ptr<1>, %y: !llvm.ptr<1>, %tokens: i32, %position: i32, %lds_mma0: memref<2x4xi16, #gpu.address_space<workgroup>>, %lds_mma1: memref<2x16xi16, #gpu.address_space<workgroup>>):
// CHECK:      %[[LANE:.*]] = "gpu.thread_id"()
// CHECK:      %a = llvm.load %{{.*}} : !llvm.ptr<1> -> i16
// CHECK:      %b = llvm.load %{{.*}} : !llvm.ptr<1> -> i16
// CHECK:      "gpu.barrier"()
// CHECK:      %[[OWNS:.*]] = arith.cmpi ult, %[[LANE]], %{{.*}} : index
// CHECK:      scf.if %[[OWNS]] {
// CHECK-NEXT:   memref.store %a, %lds_mma0[%{{.*}}, %{{.*}}] : memref<2x4xi16, #gpu.address_space<workgroup>>
// CHECK:      memref.store %b, %lds_mma1[%{{.*}}, %{{.*}}] : memref<2x16xi16, #gpu.address_space<workgroup>>
// CHECK-NEXT: "gpu.barrier"()
// CHECK:      %[[ROW:.*]] = arith.divui %[[LANE]], %[[SIXTEEN:.*]] : index
// CHECK-NEXT: %[[COL:.*]] = arith.remui %[[LANE]], %[[SIXTEEN]] : index
// CHECK:      %d = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[SUM:.*]] = %zero) -> (f32) {
// CHECK:        memref.load %lds_mma0[%[[ROW]], %[[K]]]
// CHECK:        arith.bitcast %{{.*}} : i32 to f32
// CHECK:        memref.load %lds_mma1[%[[K]], %{{.*}}]
// CHECK:        %[[P:.*]] = arith.mulf %{{.*}}, %{{.*}} fastmath<contract> : f32
// CHECK:        %[[NEXT:.*]] = arith.addf %[[SUM]], %[[P]] fastmath<contract> : f32
// CHECK:        scf.yield %[[NEXT]] : f32
// CHECK:      llvm.store %d, %{{.*}} : f32, !llvm.ptr<1>
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @mma attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "sm_90a", tiles = {rows = 2 : i64, threads = 32 : i64}} {
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
