// RUN: not tessera-opt %s -p tessera-tile-compute-footprint 2>&1 | FileCheck %s

// 512 x 1024 floats of scratch: 2 MiB, over the 1 MiB an x86 core's L2 is planned with.
// CHECK: tessera-opt: error: tessera.tile.kernel @huge: footprint 2097152 bytes exceeds the x86 limit of 1048576 bytes
tessera.tile.kernel @huge attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "x86", tiles = {}} {
^bb0(%t: index):
  %s = tessera.tile.alloc : memref<512x1024xf32>
}
