// convert-tessera-tile-to-simt{arch=sm_90a} on the inclusive scan of a rank-1 tile of 64 elements over a warp
// of 32 (two slots per lane): within each slot, log2 steps of gpu.shuffle up, a lane taking the combined
// value only where it has a lane `offset` below it (lane >= offset); then the second slot combines with the
// first slot's total, which the last lane holds (gpu.shuffle idx 31).
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:      %[[LANE:.*]] = "gpu.thread_id"()
// CHECK:      %[[UP1:.*]], %{{.*}} = "gpu.shuffle"(%[[SLOT0:.*]], %[[ONE:.*]], %[[WIDTH:.*]]) <{mode = #gpu<shuffle_mode up>}> : (f32, i32, i32) -> (f32, i1)
// CHECK:      %[[HAS1:.*]] = arith.cmpi uge, %[[LANE]], %{{.*}} : index
// CHECK-NEXT: %[[SUM1:.*]] = arith.addf %[[SLOT0]], %[[UP1]] : f32
// CHECK-NEXT: arith.select %[[HAS1]], %[[SUM1]], %[[SLOT0]] : f32
// CHECK-COUNT-4: <{mode = #gpu<shuffle_mode up>}>
// CHECK:      %[[TOTAL:.*]], %{{.*}} = "gpu.shuffle"(%[[DONE:.*]], %{{.*}}, %[[WIDTH]]) <{mode = #gpu<shuffle_mode idx>}> : (f32, i32, i32) -> (f32, i1)
// CHECK-COUNT-5: <{mode = #gpu<shuffle_mode up>}>
// CHECK:      arith.addf %[[TOTAL]], %{{.*}} : f32
// CHECK-NOT:  tessera.tile

builtin.module {
  tessera.tile.kernel @scan attributes {kind = "scan_test", dims = {}, parallel = "tokens", grid = 0 : i64, target = "sm_90a", tiles = {}} {
  ^bb0(%x: memref<?x64xf32>, %y: memref<?x64xf32>, %t: index):
    %c0 = arith.constant 0 : index
    %v = tessera.tile.load %x[%t, %c0] : memref<?x64xf32> -> !tessera.tile.tile<64xf32>
    %sums = tessera.tile.scan "add" %v {axis = 0 : i64} : !tessera.tile.tile<64xf32> -> !tessera.tile.tile<64xf32>
    tessera.tile.store %sums, %y[%t, %c0] : !tessera.tile.tile<64xf32>, memref<?x64xf32>
  }
}
