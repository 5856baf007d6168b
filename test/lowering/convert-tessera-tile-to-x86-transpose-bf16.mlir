// The transposed [16, 16] store into a bf16 buffer (kernels/mamba.py writes an SSM state back this way): the
// rows are shuffled as their bits (i16) and each column is bitcast to bf16 for its one vector.store.
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s
// RUN: tessera-opt %s -t x86-mlir | %python -m tessera.lowering.x86.pipeline | FileCheck %s --check-prefix=LLVM

// CHECK:      vector.extract %{{.*}}[0] : vector<16xi16> from vector<16x16xi16>
// CHECK:      vector.shuffle %{{.*}}, %{{.*}} [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23] : vector<16xi16>, vector<16xi16>
// CHECK-COUNT-16: vector.store %{{.*}}, %out[%{{.*}}, %c0] : memref<16x16xbf16>, vector<16xbf16>
// CHECK-NOT:  vector.transfer_write
// CHECK-NOT:  tessera.tile

// LLVM: define void @transpose_bf16(
// LLVM-COUNT-16: store <16 x bfloat>

builtin.module {
  tessera.tile.kernel @transpose_bf16 attributes {kind = "transpose_test", dims = {}, parallel = "tokens", grid = 1 : i64, target = "x86", tiles = {}} {
  ^bb0(%in: memref<16x16xf32>, %out: memref<16x16xbf16>, %t: index):
    %c0 = arith.constant 0 : index
    %rows = tessera.tile.load %in[%c0, %c0] : memref<16x16xf32> -> !tessera.tile.tile<16x16xf32>
    %narrow = tessera.tile.convert %rows : !tessera.tile.tile<16x16xf32> -> !tessera.tile.tile<16x16xbf16>
    tessera.tile.store %narrow, %out[%c0, %c0] {axes = array<i64: 1, 0>} : !tessera.tile.tile<16x16xbf16>, memref<16x16xbf16>
  }
}
