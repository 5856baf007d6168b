// convert-tessera-tile-to-x86 on a kernel of kernels/rows.py (rmsnorm, hidden 24 in tiles of 32, bf16 out):
// the program loop over [begin, end), tiles as vectors, the tail masked, the row sum as a reassociating
// vector.reduction, the bf16 rounding in integer ops, the bf16 tail stored as i16 bits (gemm-edges.mlir says why).
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s

// CHECK:      func.func @rmsnorm_hidden24_outbf16(%x: memref<?x24xf32>, %weight: memref<24xf32>, %out: memref<?x24xbf16>, %begin: index, %end: index)
// CHECK:        scf.for %t = %begin to %end
// CHECK:          scf.for {{.*}} iter_args({{.*}}) -> (vector<32xf32>)
// CHECK:            vector.create_mask {{.*}} : vector<32xi1>
// CHECK:            vector.maskedload %x[%t, {{.*}}], {{.*}} : memref<?x24xf32>, vector<32xi1>, vector<32xf32> into vector<32xf32>
// CHECK:          vector.reduction <add>, {{.*}} fastmath<reassoc,contract> : vector<32xf32> into f32
// CHECK:          math.sqrt
// CHECK:          vector.broadcast {{.*}} : f32 to vector<32xf32>
// CHECK:          vector.shuffle {{.*}} [1, 3, 5,
// CHECK:          scf.if
// CHECK:            vector.store {{.*}}, %out[%t, {{.*}}] : memref<?x24xbf16>, vector<32xbf16>
// CHECK:          } else {
// CHECK:            llvm.store {{.*}} : i16, !llvm.ptr
// CHECK:      func.return
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @rmsnorm_hidden24_outbf16 attributes {kind = "rmsnorm", dims = {hidden = 24 : i64, epsilon = 1.000000e-05 : f64, out_dtype = "bf16"}, parallel = "tokens", grid = 0 : i64, target = "x86", tiles = {block = 32 : i64}} {
  ^bb0(%x: memref<?x24xf32>, %weight: memref<24xf32>, %out: memref<?x24xbf16>, %t: index):
    %0 = arith.constant 1.000000e-05 : f32
    %1 = arith.constant 1.000000e+00 : f32
    %2 = arith.constant 2.400000e+01 : f32
    %3 = arith.constant 0.000000e+00 : f32
    %4 = arith.constant 32 : index
    %5 = arith.constant 0 : index
    %6 = arith.constant 24 : index
    %7 = tessera.tile.splat %3 : f32 -> !tessera.tile.tile<32xf32>
    %8 = scf.for %9 = %5 to %6 step %4 iter_args(%10 = %7) -> (!tessera.tile.tile<32xf32>) {
      %11 = tessera.tile.load %x[%t, %9] bound %6 : memref<?x24xf32> -> !tessera.tile.tile<32xf32>
      %12 = tessera.tile.map %10, %11 : !tessera.tile.tile<32xf32>, !tessera.tile.tile<32xf32> -> !tessera.tile.tile<32xf32> {
      ^bb0(%13: f32, %14: f32):
        %15 = arith.mulf %14, %14 : f32
        %16 = arith.addf %13, %15 : f32
        tessera.tile.yield %16 : f32
      }
      scf.yield %12 : !tessera.tile.tile<32xf32>
    }
    %17 = tessera.tile.reduce "add" %8 {axis = 0 : i64} : !tessera.tile.tile<32xf32> -> f32
    %18 = arith.divf %17, %2 : f32
    %19 = arith.addf %18, %0 : f32
    %20 = math.sqrt %19 : f32
    %21 = arith.divf %1, %20 : f32
    scf.for %22 = %5 to %6 step %4 {
      %23 = tessera.tile.load %x[%t, %22] bound %6 : memref<?x24xf32> -> !tessera.tile.tile<32xf32>
      %24 = tessera.tile.load %weight[%22] bound %6 : memref<24xf32> -> !tessera.tile.tile<32xf32>
      %25 = tessera.tile.map %23, %24, %21 : !tessera.tile.tile<32xf32>, !tessera.tile.tile<32xf32>, f32 -> !tessera.tile.tile<32xf32> {
      ^bb0(%26: f32, %27: f32, %28: f32):
        %29 = arith.mulf %26, %28 : f32
        %30 = arith.mulf %27, %29 : f32
        tessera.tile.yield %30 : f32
      }
      %31 = tessera.tile.convert %25 : !tessera.tile.tile<32xf32> -> !tessera.tile.tile<32xbf16>
      tessera.tile.store %31, %out[%t, %22] bound %6 : !tessera.tile.tile<32xbf16>, memref<?x24xbf16>
    }
  }
}
