// tessera.tile.interleave (two bf16 rows as one row of k pairs, the right operand of an mma with rhs_pairs:
// kernels/ssd_matrix.py builds its AMX operands so): one two-input shuffle of the rows' bits (i16), its lanes
// alternating between them, stored as bf16.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      vector.shuffle %{{.*}}, %{{.*}} [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31] : vector<16xi16>, vector<16xi16>
// CHECK:      vector.store %{{.*}}, %out[%c0, %c0] : memref<1x32xbf16>, vector<32xbf16>
// CHECK-NOT:  tessera.tile

// LLVM: define void @pairs_bf16(
// LLVM: shufflevector <16 x i16>
// LLVM: store <32 x bfloat>

builtin.module {
  tessera.tile.kernel @pairs_bf16 attributes {kind = "pairs_test", dims = {}, parallel = "tokens", grid = 1 : i64, target = "x86", tiles = {}} {
  ^bb0(%in: memref<2x16xf32>, %out: memref<1x32xbf16>, %t: index):
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %even = tessera.tile.load %in[%c0, %c0] : memref<2x16xf32> -> !tessera.tile.tile<16xf32>
    %odd = tessera.tile.load %in[%c1, %c0] : memref<2x16xf32> -> !tessera.tile.tile<16xf32>
    %even16 = tessera.tile.convert %even : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<16xbf16>
    %odd16 = tessera.tile.convert %odd : !tessera.tile.tile<16xf32> -> !tessera.tile.tile<16xbf16>
    %pairs = tessera.tile.interleave %even16, %odd16 : !tessera.tile.tile<16xbf16>, !tessera.tile.tile<16xbf16> -> !tessera.tile.tile<32xbf16>
    tessera.tile.store %pairs, %out[%c0, %c0] : !tessera.tile.tile<32xbf16>, memref<1x32xbf16>
  }
}
