// RUN: tessera-opt %s -p tessera-tile-compute-footprint | FileCheck %s

// On x86 a kernel's fast memory is what it loads into a fast space (registers by default) and its scratch:
// a 6x64 and a 64x32 f32 tile loaded, a 6x32 scratch: (384 + 2048 + 192) * 4 = 10496 bytes. Main-memory
// buffers (launch operands, "global" scratch) do not count.
// CHECK: tessera.tile.kernel @gemm attributes {{.*}}footprint = 10496 : i64}
tessera.tile.kernel @gemm attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {}} {
^bb0(%x: memref<?x64xf32>, %w: memref<64x32xf32>, %t: index):
  %c0 = arith.constant 0 : index
  %a = tessera.tile.load %x[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<6x64xf32>
  %b = tessera.tile.load %w[%c0, %c0] : memref<64x32xf32> -> !tessera.tile.tile<64x32xf32>
  %s = tessera.tile.alloc : memref<6x32xf32>
  %g = tessera.tile.alloc {space = "global"} : memref<6x32xf32>
}
