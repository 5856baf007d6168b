// convert-tessera-tile-to-simt{arch=sm_90a} then tessera-expand-math{target=sm_90a} on a kernel of
// kernels/rows.py (rms_scale, hidden 96 over a warp of 32): one warp per program (gpu.block_id), a feature
// per lane per step, the row sum finished by a butterfly of gpu.shuffle xor, the scalar stored by lane 0, and
// the square root as the PTX's correctly rounded sqrt.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a},tessera-expand-math{target=sm_90a}' | FileCheck %s

// CHECK:      "gpu.module"() <{sym_name = "kernels"}>
// CHECK:      "gpu.func"() <{function_type = (!llvm.ptr<1>, !llvm.ptr<1>, i32, i32) -> (), kernel}>
// CHECK-NEXT: ^bb0(%h: !llvm.ptr<1>, %rstd: !llvm.ptr<1>, %tokens: i32, %position: i32):
// CHECK:        %[[LANE:.*]] = "gpu.thread_id"() <{dimension = #gpu<dim x>}>
// CHECK:        %t = "gpu.block_id"() <{dimension = #gpu<dim x>}>
// CHECK:        scf.for
// CHECK:          llvm.getelementptr %h[{{.*}}] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
// CHECK-COUNT-5:  "gpu.shuffle"({{.*}}) <{mode = #gpu<shuffle_mode xor>}> : (f32, i32, i32) -> (f32, i1)
// CHECK:        llvm.call_intrinsic "llvm.sqrt.f32"
// CHECK:        arith.cmpi eq, %[[LANE]]
// CHECK:        scf.if
// CHECK:          llvm.store {{.*}} : f32, !llvm.ptr<1>
// CHECK:      "gpu.return"()
// CHECK-NEXT: sym_name = "rms_scale_hidden96", gpu.kernel, known_block_size = array<i32: 32, 1, 1>
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @rms_scale_hidden96 attributes {kind = "rms_scale", dims = {hidden = 96 : i64, epsilon = 1.000000e-05 : f64}, parallel = "tokens", grid = 0 : i64, target = "sm_90a", tiles = {block = 32 : i64, threads = 32 : i64}} {
  ^bb0(%h: memref<?x96xf32>, %rstd: memref<?xf32>, %t: index):
    %0 = arith.constant 1.000000e-05 : f32
    %1 = arith.constant 1.000000e+00 : f32
    %2 = arith.constant 9.600000e+01 : f32
    %3 = arith.constant 0.000000e+00 : f32
    %4 = arith.constant 32 : index
    %5 = arith.constant 96 : index
    %6 = arith.constant 0 : index
    %7 = tessera.tile.splat %3 : f32 -> !tessera.tile.tile<32xf32>
    %8 = scf.for %9 = %6 to %5 step %4 iter_args(%10 = %7) -> (!tessera.tile.tile<32xf32>) {
      %11 = tessera.tile.load %h[%t, %9] : memref<?x96xf32> -> !tessera.tile.tile<32xf32>
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
    tessera.tile.store %21, %rstd[%t] : f32, memref<?xf32>
  }
}
