// convert-tessera-tile-to-x86{amx=true}: the AMX pattern of tessera.tile.mma (lowering/tile_to_amx.py). A loop
// carrying a zero-started f32 [32, 16] accumulator, updated by an mma of a bf16 [32, 32] tile and a weight
// given as k pairs ([16, 32]: VNNI), then stored whole, keeps the accumulator in two AMX tiles: tile_zero
// before the loop, per k step one tile_load per 16-row tile of a and one of the weight (each where its first
// product reads it: row tile by row tile), one tile_mulf per row tile, one tile_store per row tile after. The body
// is ranged: the function runs [begin, end) of the grid itself (no program loop).
// Without {amx=true} the same mma is vector FMAs, the weight's rows being the halves of each pair row's words.
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-x86{amx=true}' | FileCheck %s
// RUN: tessera-opt %s -p convert-tessera-tile-to-x86 | FileCheck %s --check-prefix=FMA

// CHECK:      func.func @amx_block(%x: memref<64x32xbf16>, %w: memref<2x16x32xbf16>, %y: memref<64x16xf32>, %begin: index, %end: index)
// CHECK-NOT:  scf.for %t
// CHECK:      %[[C0:.*]] = "amx.tile_zero"() : () -> !amx.tile<16x16xf32>
// CHECK-NEXT: %[[C1:.*]] = "amx.tile_zero"() : () -> !amx.tile<16x16xf32>
// CHECK-NEXT: %[[R0:.*]], %[[R1:.*]] = scf.for %[[K:.*]] = %{{.*}} to %{{.*}} step %{{.*}} iter_args(%[[A0:.*]] = %[[C0]], %[[A1:.*]] = %[[C1]]) -> (!amx.tile<16x16xf32>, !amx.tile<16x16xf32>) {
// CHECK:        %[[X0:.*]] = "amx.tile_load"(%x, %{{.*}}, %[[K]]) <{operandSegmentSizes = array<i32: 1, 2, 0>}> : (memref<64x32xbf16>, index, index) -> !amx.tile<16x32xbf16>
// CHECK-NEXT:   %[[B:.*]] = "amx.tile_load"(%w, %begin, %{{.*}}, %{{.*}}) <{operandSegmentSizes = array<i32: 1, 3, 0>}> : (memref<2x16x32xbf16>, index, index, index) -> !amx.tile<16x32xbf16>
// CHECK-NEXT:   %[[P0:.*]] = "amx.tile_mulf"(%[[X0]], %[[B]], %[[A0]]) : (!amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>) -> !amx.tile<16x16xf32>
// CHECK:        %[[X1:.*]] = "amx.tile_load"(%x, %{{.*}}, %[[K]])
// CHECK-NEXT:   %[[P1:.*]] = "amx.tile_mulf"(%[[X1]], %[[B]], %[[A1]])
// CHECK-NEXT:   scf.yield %[[P0]], %[[P1]] : !amx.tile<16x16xf32>, !amx.tile<16x16xf32>
// CHECK:      "amx.tile_store"(%y, %c0, %c0, %[[R0]]) <{operandSegmentSizes = array<i32: 1, 2, 1, 0>}> : (memref<64x16xf32>, index, index, !amx.tile<16x16xf32>) -> ()
// CHECK:      "amx.tile_store"(%y, %{{.*}}, %c0, %[[R1]])
// CHECK-NOT:  tessera.tile

// FMA:        scf.for %{{.*}} iter_args(%{{.*}} = %{{.*}}) -> (vector<32x16xf32>)
// FMA:        vector.bitcast %{{.*}} : vector<32xi16> to vector<16xi32>
// FMA:        arith.shli
// FMA:        arith.andi
// FMA:        vector.fma
// FMA-NOT:    amx.

builtin.module {
  tessera.tile.kernel @amx_block attributes {kind = "gemm_test", dims = {}, parallel = "panels", grid = 2 : i64, target = "x86", tiles = {}, ranged} {
  ^bb0(%x: memref<64x32xbf16>, %w: memref<2x16x32xbf16>, %y: memref<64x16xf32>, %first: index, %end: index):
    %c0 = arith.constant 0 : index
    %c2 = arith.constant 2 : index
    %c32 = arith.constant 32 : index
    %zero = arith.constant 0.0 : f32
    %acc = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<32x16xf32>
    %sum = scf.for %k = %c0 to %c32 step %c32 iter_args(%c = %acc) -> (!tessera.tile.tile<32x16xf32>) {
      %pair = arith.divsi %k, %c2 : index
      %a = tessera.tile.load %x[%c0, %k] : memref<64x32xbf16> -> !tessera.tile.tile<32x32xbf16>
      %b = tessera.tile.load %w[%first, %pair, %c0] : memref<2x16x32xbf16> -> !tessera.tile.tile<16x32xbf16>
      %d = tessera.tile.mma %a, %b, %c {rhs_pairs} : !tessera.tile.tile<32x32xbf16>, !tessera.tile.tile<16x32xbf16>, !tessera.tile.tile<32x16xf32> -> !tessera.tile.tile<32x16xf32>
      scf.yield %d : !tessera.tile.tile<32x16xf32>
    }
    tessera.tile.store %sum, %y[%c0, %c0] : !tessera.tile.tile<32x16xf32>, memref<64x16xf32>
  }
}
