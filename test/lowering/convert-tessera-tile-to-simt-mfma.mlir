// convert-tessera-tile-to-simt{arch=gfx942}, the MFMA pattern of tessera.tile.mma: a [16, 32] x [32, 32] bf16
// product (b given transposed, [N, K]: a weight) into a [16, 32] accumulator is two 16x16 blocks of CDNA's
// bf16 MFMA, two K steps of 16 each. The operands, loaded only to be multiplied, are read in runs of 8 bf16
// (lowering/simt_lanes.py Runs: one aligned 16-byte load each, a run per lane of a, two of b), then staged
// in LDS (bf16 as i16, rows padded to 36 elements: conflict-free fragment reads); the accumulator's Fragments layout is arch.WaveFragments as data
// (lane l = 16 q + c holds rows 4 q .. 4 q + 3 of column c of each block), so each lane reads, per K step, a
// four-element fragment of its a row and of each block's b row with one vector load, and issues one
// rocdl.mfma.f32.16x16x16bf16.1k per block; the store walks the same layout.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=gfx942}' | FileCheck %s

// CHECK:      %lds_mma0: memref<16x36xi16, #gpu.address_space<workgroup>>, %lds_mma1: memref<32x36xi16, #gpu.address_space<workgroup>>
// CHECK:      llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xi16>
// CHECK-COUNT-2: llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xi16>
// CHECK-NOT:  llvm.load
// CHECK:      "gpu.barrier"()
// CHECK:      memref.store %{{.*}}, %lds_mma0
// CHECK:      memref.store %{{.*}}, %lds_mma1
// CHECK:      "gpu.barrier"()
// CHECK:      %[[A0:.*]] = vector.load %lds_mma0[%{{.*}}, %{{.*}}] : memref<16x36xi16, #gpu.address_space<workgroup>>, vector<4xi16>
// CHECK:      %[[B0:.*]] = vector.load %lds_mma1[%{{.*}}, %{{.*}}] : memref<32x36xi16, #gpu.address_space<workgroup>>, vector<4xi16>
// CHECK:      %[[B1:.*]] = vector.load %lds_mma1[%{{.*}}, %{{.*}}] : memref<32x36xi16, #gpu.address_space<workgroup>>, vector<4xi16>
// CHECK:      "rocdl.mfma.f32.16x16x16bf16.1k"(%[[A0]], %[[B0]], %{{.*}}) : (vector<4xi16>, vector<4xi16>, vector<4xf32>, i32, i32, i32) -> vector<4xf32>
// CHECK:      "rocdl.mfma.f32.16x16x16bf16.1k"(%[[A0]], %[[B1]], %{{.*}})
// CHECK-COUNT-2: "rocdl.mfma.f32.16x16x16bf16.1k"
// CHECK-NOT:  rocdl.mfma
// CHECK:      vector.extract
// CHECK:      llvm.store %{{.*}} : f32, !llvm.ptr<1>
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @mfma attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "gfx942", tiles = {rows = 16 : i64, threads = 64 : i64}} {
  ^bb0(%x: memref<?x32xbf16>, %w: memref<32x32xbf16>, %y: memref<?x32xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c16 : index
    %a = tessera.tile.load %x[%r, %c0] : memref<?x32xbf16> -> !tessera.tile.tile<16x32xbf16>
    %b = tessera.tile.load %w[%c0, %c0] : memref<32x32xbf16> -> !tessera.tile.tile<32x32xbf16>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<16x32xf32>
    %d = tessera.tile.mma %a, %b, %c {rhs_transposed} : !tessera.tile.tile<16x32xbf16>, !tessera.tile.tile<32x32xbf16>, !tessera.tile.tile<16x32xf32> -> !tessera.tile.tile<16x32xf32>
    tessera.tile.store %d, %y[%r, %c0] : !tessera.tile.tile<16x32xf32>, memref<?x32xf32>
  }
}
