// convert-tessera-tile-to-simt{arch=sm_90a} on a streamed row (an rmsnorm of kernels/rows.py, hidden 256, tiles
// of 128 features over a warp of 32: simt_lanes.choose_row_runs): every lane holds runs of 4 consecutive
// features, so each load of x and of the weight is one aligned 16-byte llvm.load of vector<4xf32>, the
// loop-carried sums are a vector<4xf32> a lane, the row sum a butterfly of 5 gpu.shuffle xor, and the bf16
// output one 8-byte llvm.store of vector<4xi16> a lane.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:        scf.for {{.*}} iter_args({{.*}}) -> (vector<4xf32>)
// CHECK:          llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK-COUNT-5:  "gpu.shuffle"({{.*}}) <{mode = #gpu<shuffle_mode xor>}> : (f32, i32, i32) -> (f32, i1)
// CHECK:        scf.for
// CHECK:          llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK:          llvm.load %{{.*}} {alignment = 16 : i64} : !llvm.ptr<1> -> vector<4xf32>
// CHECK:          llvm.store %{{.*}}, %{{.*}} {alignment = 8 : i64} : vector<4xi16>, !llvm.ptr<1>
// CHECK-NOT:  llvm.store
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @rmsnorm_hidden256 attributes {kind = "rmsnorm", dims = {hidden = 256 : i64, epsilon = 1.000000e-05 : f64, out_dtype = "bf16"}, parallel = "tokens", grid = 0 : i64, target = "sm_90a", tiles = {threads = 32 : i64, block = 128 : i64}} {
  ^bb0(%x: memref<?x256xf32>, %weight: memref<256xf32>, %out: memref<?x256xbf16>, %t: index):
    %eps = arith.constant 1.000000e-05 : f32
    %one = arith.constant 1.000000e+00 : f32
    %width = arith.constant 2.560000e+02 : f32
    %zero = arith.constant 0.000000e+00 : f32
    %c128 = arith.constant 128 : index
    %c256 = arith.constant 256 : index
    %c0 = arith.constant 0 : index
    %init = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<128xf32>
    %sums = scf.for %c = %c0 to %c256 step %c128 iter_args(%acc = %init) -> (!tessera.tile.tile<128xf32>) {
      %v = tessera.tile.load %x[%t, %c] : memref<?x256xf32> -> !tessera.tile.tile<128xf32>
      %next = tessera.tile.map %acc, %v : !tessera.tile.tile<128xf32>, !tessera.tile.tile<128xf32> -> !tessera.tile.tile<128xf32> {
      ^bb0(%a: f32, %e: f32):
        %sq = arith.mulf %e, %e : f32
        %s = arith.addf %a, %sq : f32
        tessera.tile.yield %s : f32
      }
      scf.yield %next : !tessera.tile.tile<128xf32>
    }
    %total = tessera.tile.reduce "add" %sums {axis = 0 : i64} : !tessera.tile.tile<128xf32> -> f32
    %mean = arith.divf %total, %width : f32
    %shifted = arith.addf %mean, %eps : f32
    %root = math.sqrt %shifted : f32
    %scale = arith.divf %one, %root : f32
    scf.for %c = %c0 to %c256 step %c128 {
      %v = tessera.tile.load %x[%t, %c] : memref<?x256xf32> -> !tessera.tile.tile<128xf32>
      %g = tessera.tile.load %weight[%c] : memref<256xf32> -> !tessera.tile.tile<128xf32>
      %normed = tessera.tile.map %v, %g, %scale : !tessera.tile.tile<128xf32>, !tessera.tile.tile<128xf32>, f32 -> !tessera.tile.tile<128xf32> {
      ^bb0(%e: f32, %w: f32, %s: f32):
        %p = arith.mulf %e, %s : f32
        %q = arith.mulf %w, %p : f32
        tessera.tile.yield %q : f32
      }
      %h = tessera.tile.convert %normed : !tessera.tile.tile<128xf32> -> !tessera.tile.tile<128xbf16>
      tessera.tile.store %h, %out[%t, %c] : !tessera.tile.tile<128xbf16>, memref<?x256xbf16>
    }
  }
}
