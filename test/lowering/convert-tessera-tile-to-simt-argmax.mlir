// convert-tessera-tile-to-simt{arch=sm_90a} on an arg-max (the shape of kernels/moe.py's router): element e of
// a tile is in lane e, so tessera.tile.iota is the lane; an integer reduce is a gpu.shuffle xor butterfly of
// arith.minsi (the float one of arith.maximumf).
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:      %[[LANE:.*]] = "gpu.thread_id"()
// CHECK:      %at = arith.index_cast %[[LANE]] : index to i32
// CHECK:      "gpu.shuffle"(%v, %{{.*}}, %{{.*}}) <{mode = #gpu<shuffle_mode xor>}> : (f32, i32, i32) -> (f32, i1)
// CHECK:      %top = arith.maximumf
// CHECK:      %holders = arith.select %{{.*}}, %at, %{{.*}} : i32
// CHECK:      "gpu.shuffle"(%holders, %{{.*}}, %{{.*}}) <{mode = #gpu<shuffle_mode xor>}> : (i32, i32, i32) -> (i32, i1)
// CHECK:      %where = arith.minsi
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @argmax attributes {kind = "moe_router", dims = {num_experts = 16 : i64}, parallel = "tokens", grid = 0 : i64, target = "sm_90a", tiles = {block = 32 : i64, threads = 32 : i64}} {
  ^bb0(%x: memref<?x32xf32>, %ids: memref<?x1xi64>, %t: index):
    %c0 = arith.constant 0 : index
    %v = tessera.tile.load %x[%t, %c0] : memref<?x32xf32> -> !tessera.tile.tile<32xf32>
    %at = tessera.tile.iota : !tessera.tile.tile<32xi32>
    %top = tessera.tile.reduce "max" %v {axis = 0 : i64} : !tessera.tile.tile<32xf32> -> f32
    %holders = tessera.tile.map %v, %at, %top : !tessera.tile.tile<32xf32>, !tessera.tile.tile<32xi32>, f32 -> !tessera.tile.tile<32xi32> {
    ^bb1(%e: f32, %a: i32, %m: f32):
      %never = arith.constant 2147483647 : i32
      %is_top = arith.cmpf oeq, %e, %m : f32
      %h = arith.select %is_top, %a, %never : i32
      tessera.tile.yield %h : i32
    }
    %where = tessera.tile.reduce "min" %holders {axis = 0 : i64} : !tessera.tile.tile<32xi32> -> i32
    %id = arith.extsi %where : i32 to i64
    tessera.tile.store %id, %ids[%t, %c0] : i64, memref<?x1xi64>
  }
}
