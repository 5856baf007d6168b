// convert-tessera-tile-to-x86 on a store of a [16, b <= 16] tile whose axis 0 runs along the buffer's innermost
// dimension and axis 1 along an outer one (kernels/attention.py stores a block of keys into Kᵀ this way): the
// 16 rows, padded to 16 lanes, are transposed by four levels of two-input vector.shuffles (the off-diagonal
// 8 x 8, 4 x 4, 2 x 2, 1 x 1 blocks swap), and each of the b columns is one vector.store along the innermost
// dimension — not a transfer write with this permutation map, which upstream lowers element by element.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      %[[ROW0:.*]] = vector.extract %keys[0] : vector<8xf32> from vector<16x8xf32>
// CHECK-NEXT: %[[PADDED0:.*]] = vector.shuffle %[[ROW0]], %[[ROW0]] [0, 1, 2, 3, 4, 5, 6, 7, -1, -1, -1, -1, -1, -1, -1, -1] : vector<8xf32>, vector<8xf32>
// CHECK:      %[[ROW8:.*]] = vector.extract %keys[8] : vector<8xf32> from vector<16x8xf32>
// CHECK-NEXT: %[[PADDED8:.*]] = vector.shuffle %[[ROW8]], %[[ROW8]]
// CHECK:      vector.shuffle %[[PADDED0]], %[[PADDED8]] [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23] : vector<16xf32>, vector<16xf32>
// The transpose's rows 8-15 would hold the padding: they are never stored, and their shuffles are erased.
// CHECK-NOT:  [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31]
// CHECK-COUNT-8: vector.store %{{.*}}, %kt[%{{.*}}, %c0] : memref<8x16xf32>, vector<16xf32>
// CHECK-NOT:  vector.transfer_write
// CHECK-NOT:  tessera.tile

// LLVM: define void @transpose(
// LLVM-COUNT-8: store <16 x float>
// LLVM-NOT: store float

builtin.module {
  tessera.tile.kernel @transpose attributes {kind = "transpose_test", dims = {}, parallel = "tokens", grid = 1 : i64, target = "x86", tiles = {}} {
  ^bb0(%k: memref<16x8xf32>, %kt: memref<8x16xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %keys = tessera.tile.load %k[%c0, %c0] : memref<16x8xf32> -> !tessera.tile.tile<16x8xf32>
    tessera.tile.store %keys, %kt[%c0, %c0] {axes = array<i64: 1, 0>} : !tessera.tile.tile<16x8xf32>, memref<8x16xf32>
  }
}
