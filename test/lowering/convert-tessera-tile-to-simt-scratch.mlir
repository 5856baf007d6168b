// convert-tessera-tile-to-simt{arch=sm_90a} on a kernel with a scratch buffer, a column tile and the call's
// token count (the shape of kernels/mamba.py's conv_silu): tessera.tile.alloc becomes a workgroup attribution
// of the gpu.func (read and written with memref.load / store, a barrier after each store); the column's lane
// steps along dimension 0 of its buffer (offset c * 4 + 1); memref.dim of the token dimension is %tokens.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:      ^bb0(%w: !llvm.ptr<1>, %out: !llvm.ptr<1>, %tokens: i32, %position: i32, %lds_taps: memref<1x32xf32, #gpu.address_space<workgroup>>):
// CHECK:        %[[LANE:.*]] = "gpu.thread_id"()
// CHECK:        %[[C:.*]] = arith.addi %c, %[[LANE]] : index
// CHECK:        %[[ROW:.*]] = arith.index_cast %[[C]] : index to i32
// CHECK:        arith.muli %[[ROW]], %{{.*}} : i32
// CHECK:        memref.store %col, %lds_taps[%c0, %{{.*}}] : memref<1x32xf32, #gpu.address_space<workgroup>>
// CHECK-NEXT:   "gpu.barrier"()
// CHECK:        %rows = arith.index_cast %tokens : i32 to index
// CHECK:        scf.for %r = %c0 to %rows
// CHECK:          memref.load %lds_taps[%c0, %{{.*}}] : memref<1x32xf32, #gpu.address_space<workgroup>>
// CHECK:      workgroup_attributions = 1 : i64
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @columns attributes {kind = "conv_silu", dims = {channels = 40 : i64}, parallel = "channel_panels", grid = 2 : i64, target = "sm_90a", tiles = {block = 32 : i64}} {
  ^bb0(%w: memref<40x4xf32>, %out: memref<?x40xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %c40 = arith.constant 40 : index
    %c = arith.muli %t, %c32 : index
    %taps = tessera.tile.alloc : memref<1x32xf32>
    %col = tessera.tile.load %w[%c, %c1] bound %c40 {axes = array<i64: 0>} : memref<40x4xf32> -> !tessera.tile.tile<32xf32>
    tessera.tile.store %col, %taps[%c0, %c0] : !tessera.tile.tile<32xf32>, memref<1x32xf32>
    %rows = memref.dim %out, %c0 : memref<?x40xf32>
    scf.for %r = %c0 to %rows step %c1 {
      %v = tessera.tile.load %taps[%c0, %c0] : memref<1x32xf32> -> !tessera.tile.tile<32xf32>
      tessera.tile.store %v, %out[%r, %c] bound %c40 : !tessera.tile.tile<32xf32>, memref<?x40xf32>
    }
  }
}
