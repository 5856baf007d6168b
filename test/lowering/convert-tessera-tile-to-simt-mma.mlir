// convert-tessera-tile-to-simt has no lowering of tessera.tile.mma yet: one line naming the op, exit 1.
// RUN: not tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' 2>&1 | FileCheck %s

// CHECK: tessera-opt: error: tessera.tile.mma: no GPU lowering yet (its MFMA and WGMMA patterns come next)
// CHECK-NOT: Traceback

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
