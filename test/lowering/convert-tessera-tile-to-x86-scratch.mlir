// convert-tessera-tile-to-x86 on a kernel with a scratch buffer, a column tile and the call's token count
// (the shape of kernels/mamba.py's conv_silu): tessera.tile.alloc is a memref.alloca before the program loop
// (one stack buffer per call, which every program reuses);
// the column (tile axis along dimension 0) is a masked vector.transfer_read with that permutation map, which
// the upstream pipeline lowers element by element (its ub.poison start included); memref.dim stays.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      func.func @columns(%w: memref<40x4xf32>, %out: memref<?x40xf32>, %begin: index, %end: index)
// CHECK-NEXT:   %taps = memref.alloca() {alignment = 64 : i64} : memref<1x32xf32>
// CHECK:        scf.for %t = %begin to %end
// CHECK:          vector.transfer_read %w[%c, %c1], %{{.*}}, %{{.*}} {permutation_map = affine_map<(d0, d1) -> (d0)>} : memref<40x4xf32>, vector<32xf32>
// CHECK:          vector.store %col, %taps[%c0, %c0]
// CHECK:          %rows = memref.dim %out, %c0
// CHECK-NOT:      memref.dealloc
// CHECK-NOT:  tessera.tile

// LLVM: define void @columns(
// LLVM: alloca float, i64 {{.*}}, align 64
// LLVM-NOT: @malloc(

builtin.module {
  tessera.tile.kernel @columns attributes {kind = "conv_silu", dims = {channels = 40 : i64}, parallel = "channel_panels", grid = 2 : i64, target = "x86", tiles = {block = 32 : i64}} {
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
