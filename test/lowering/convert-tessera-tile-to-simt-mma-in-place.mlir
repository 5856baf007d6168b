// convert-tessera-tile-to-simt{arch=gfx942}: an mma operand that is a scratch buffer's whole contents (a load
// of the buffer from its origin, used by the mma alone: tile.read_in_place) is read in place, not staged again:
// the buffer's rows are padded as a staged operand's would be (16 x 32 bf16 -> 16 x 36 i16: its rows are read
// down a column), only b gets a staging buffer, and the MFMA fragments of a come straight from it (%lds_a_s). The
// stores into the buffer are read in Runs (one 16-byte load a lane), like the operand they become.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=gfx942}' | FileCheck %s

// CHECK:      %lds_a_s: memref<16x36xi16, #gpu.address_space<workgroup>>, %lds_mma1: memref<32x36xi16, #gpu.address_space<workgroup>>):
// CHECK:      llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<8xi16>
// CHECK:      memref.store %{{.*}}, %lds_a_s
// CHECK:      "gpu.barrier"()
// CHECK-NOT:  lds_mma0
// CHECK:      memref.store %{{.*}}, %lds_mma1
// CHECK:      vector.load %lds_a_s[{{.*}}] : memref<16x36xi16, #gpu.address_space<workgroup>>, vector<4xi16>
// CHECK:      "rocdl.mfma.f32.16x16x16bf16.1k"
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @in_place attributes {kind = "gemm_test", dims = {}, parallel = "row_blocks", grid = 1 : i64, target = "gfx942", tiles = {rows = 16 : i64, threads = 64 : i64}} {
  ^bb0(%x: memref<?x32xbf16>, %w: memref<32x32xbf16>, %y: memref<?x32xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %c16 = arith.constant 16 : index
    %zero = arith.constant 0.0 : f32
    %r = arith.muli %t, %c16 : index
    %a_s = tessera.tile.alloc : memref<16x32xbf16>
    %x_rows = tessera.tile.load %x[%r, %c0] : memref<?x32xbf16> -> !tessera.tile.tile<16x32xbf16>
    tessera.tile.store %x_rows, %a_s[%c0, %c0] : !tessera.tile.tile<16x32xbf16>, memref<16x32xbf16>
    %a = tessera.tile.load %a_s[%c0, %c0] : memref<16x32xbf16> -> !tessera.tile.tile<16x32xbf16>
    %b = tessera.tile.load %w[%c0, %c0] : memref<32x32xbf16> -> !tessera.tile.tile<32x32xbf16>
    %c = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<16x32xf32>
    %d = tessera.tile.mma %a, %b, %c {rhs_transposed} : !tessera.tile.tile<16x32xbf16>, !tessera.tile.tile<32x32xbf16>, !tessera.tile.tile<16x32xf32> -> !tessera.tile.tile<16x32xf32>
    tessera.tile.store %d, %y[%r, %c0] : !tessera.tile.tile<16x32xf32>, memref<?x32xf32>
  }
}
