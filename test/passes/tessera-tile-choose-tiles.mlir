// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86}' | FileCheck %s
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86 precision=bf16}' | FileCheck %s --check-prefix=BF16
// RUN: not tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=tpu}' 2>&1 | FileCheck %s --check-prefix=UNKNOWN

// A GEMM's parallel unit becomes its weight panels: ceil(132 / nr) of them; its body is kernels/gemm.py's,
// taking the weight packed in panels [panels, K, nr] (the runtime packs it at load), a column of x times a
// row of the panel per k step into an mr x nr accumulator. (This one also scales its rows: the RMSNorm
// before it is folded in.)
// CHECK:      tessera.tile.kernel @matmul_bias0_store_k32_n132_row_scale1 attributes {kind = "matmul", {{.*}}parallel = "panels", grid = [[PANELS:[0-9]+]] : i64, target = "x86", tiles = {nr = [[NR:[0-9]+]] : i64, mr = [[MR:[0-9]+]] : i64{{.*}}weight_bf16 = 0 : i64}
// CHECK-NEXT: ^bb0(%x: memref<?x32xf32>, %w: memref<[[PANELS]]x32x[[NR]]xf32>, %row_scale: memref<?xf32>, %y: memref<?x132xf32>, %t: index):
// CHECK:        tessera.tile.load %x[{{.*}}] : memref<?x32xf32> -> !tessera.tile.tile<[[MR]]x1xf32>
// CHECK-NEXT:   tessera.tile.load %w[%t, {{.*}}] {axes = array<i64: 1, 2>} : memref<[[PANELS]]x32x[[NR]]xf32> -> !tessera.tile.tile<1x[[NR]]xf32>
// CHECK-NEXT:   tessera.tile.mma
// The SSD scan (kernels/mamba.py) is a ranged body over heads (the runtime splits it at multiples of
// `align`: a group's heads share C·Bᵀ), chunk by chunk: the group's states (transposed, P padded to the
// lanes), Bᵀ, C·Bᵀ, the scores and the x tiles in scratch; each of its products a register block of up to
// mr rows times a row of up to nr columns per step.
// CHECK:      tessera.tile.kernel @ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001 attributes {{.*}}parallel = "heads", grid = 4 : i64, target = "x86", tiles = {chunk = 8 : i64, mr = 4 : i64, nr = 64 : i64, lanes = 16 : i64, accumulators = 24 : i64, align = 2 : i64}, ranged}
// CHECK-NEXT: ^bb0(%zxbcdt: memref<?x132xf32>, %xbc: memref<?x96xf32>, %dt_bias: memref<4xf32>, %A_log: memref<4xf32>, %D: memref<4xf32>, %ssm_state: memref<4x8x16xf32>, %y: memref<?x32xf32>, %first: index, %end: index):
// CHECK:        %st = tessera.tile.alloc : memref<2x16x16xf32>
// CHECK:        tessera.tile.mma {{.*}} : !tessera.tile.tile<4x1xf32>, !tessera.tile.tile<1x16xf32>, !tessera.tile.tile<4x16xf32> -> !tessera.tile.tile<4x16xf32>
// Attention on x86 is kernels/attention.py's row-blocked form: a ranged body over query heads (a kv group's
// heads times block_q tokens are the rows of one tile), the position scalar before [first, end).
// CHECK:      tessera.tile.kernel @attention_p8_s32_h4_hkv2 attributes {{.*}}parallel = "heads", grid = 4 : i64, target = "x86", tiles = {block_q = 64 : i64, block_k = 64 : i64, mr = 6 : i64, nr = 64 : i64{{.*}}}, ranged, scalars = ["position"]}
// CHECK-NEXT: ^bb0(%qkv: memref<?x64xf32>, %k_cache: memref<32x2x8xf32>, %v_cache: memref<32x2x8xf32>, %out: memref<?x32xf32>, %position: index, %first: index, %end: index):

// BF16: ^bb0(%x: memref<?x32xf32>, %w: memref<3x32x64xbf16>, %row_scale: memref<?xf32>, %y: memref<?x132xf32>, %t: index):

// UNKNOWN: tessera-opt: error: tessera-tile-choose-tiles: target 'tpu' has no tiling policy (known: x86, gfx942, gfx90a, sm_90a)
