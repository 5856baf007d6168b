// RUN: tessera-opt %root/graph_examples/mamba2.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32 activation-dtype=bf16},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=sm_90a precision=bf16},tessera-tile-compute-footprint' -o %t.mamba.mlir
// RUN: tessera-opt %t.mamba.mlir -t nvvm-mlir | FileCheck %s
// RUN: tessera-opt %t.mamba.mlir -t nvvm-mlir | %python -m tessera.lowering.nvvm.pipeline | FileCheck %s --check-prefix=PTX
// RUN: tessera-opt %t.mamba.mlir -t nvvm-program | FileCheck %s --check-prefix=PROGRAM
// RUN: tessera-opt %root/graph_examples/attention.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=sm_90a precision=fp32},tessera-tile-compute-footprint' -t nvvm-mlir | FileCheck %s --check-prefix=FP32
// RUN: tessera-opt %root/graph_examples/moe.mlir -p 'convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=sm_90a},tessera-tile-compute-footprint' -t nvvm-mlir | FileCheck %s --check-prefix=MOE
// RUN: not tessera-opt %root/graph_examples/mamba2.mlir -p 'convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=gfx942},tessera-tile-compute-footprint' -t nvvm-mlir 2>&1 | FileCheck %s --check-prefix=WRONG

// One gpu.module with the NVPTX data layout and the dynamic shared memory TMA kernels address. bf16
// projections take x and W as CUtensorMaps (grid constants), stage them by TMA on mbarriers and multiply on
// WGMMA; the rest are SIMT kernels of warps of 32. The chunked scan (kernels/ssd_blocks.py) is a warpgroup per
// head and block of channels: its state (Sᵀ [N padded to 64, P]), dt and the cumulative decay (hi, lo) in
// shared scratch, its four products on WGMMA with operands rounded to bf16 and staged by the lanes in the
// dynamic shared memory (128-byte swizzled rows, fenced for the async proxy).
// CHECK:       gpu.module @kernels attributes {llvm.data_layout = "e-p6:32:32-i64:64-i128:128-i256:256-v16:16-v32:32-n16:32:64"}
// CHECK-NEXT:    llvm.mlir.global external @tessera_dynamic_smem() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// CHECK:       gpu.func @embedding_hidden32_vocab64(%ids: !llvm.ptr<1>, %table: !llvm.ptr<1>, %out: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 32, 1, 1>}
// CHECK-LABEL: gpu.func @matmul_bias0_store_k32_n132_xbf16(%x: !llvm.ptr, %w: !llvm.ptr, %y: !llvm.ptr<1>, %tokens: i32, %position: i32)
// CHECK-SAME:    known_block_size = array<i32: 384, 1, 1>, tessera.grid_constants = array<i32: 0, 1>
// CHECK:         nvvm.mbarrier.init
// CHECK:         nvvm.cp.async.bulk.tensor.shared.cluster.global
// CHECK:         nvvm.wgmma.mma_async
// CHECK:         nvvm.wgmma.commit.group.sync.aligned
// CHECK-LABEL: gpu.func @ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001(
// CHECK-SAME:    workgroup(%lds_state : memref<64x8xf32, #gpu.address_space<workgroup>>, %lds_dt : memref<64xf32, #gpu.address_space<workgroup>>, %lds_hi : memref<64xf32, #gpu.address_space<workgroup>>, %lds_lo : memref<64xf32, #gpu.address_space<workgroup>>
// CHECK-SAME:    known_block_size = array<i32: 128, 1, 1>
// CHECK:         llvm.call_intrinsic "llvm.exp2.f32"
// CHECK:         nvvm.fence.proxy
// CHECK:         nvvm.wgmma.mma_async

// PTX for sm_90a: the GEMM's TMA loads complete on mbarriers, its WGMMAs are bf16 x bf16 -> f32 over the whole
// 256-column block, its producer warpgroup hands registers to the consumers (setmaxnreg), the tensor maps are
// 128-byte by-value parameters; no libdevice call is left (exp / log are written out, sqrt.rn).
// PTX:       .target sm_90a
// PTX-LABEL: .visible .entry matmul_bias0_store_k32_n132_xbf16(
// PTX-NEXT:    .param .align 64 .b8 matmul_bias0_store_k32_n132_xbf16_param_0[128],
// PTX-DAG:     mbarrier.try_wait.parity.shared.b64
// PTX-DAG:     cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
// PTX-DAG:     wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16
// PTX-DAG:     setmaxnreg.dec.sync.aligned.u32 40
// PTX-DAG:     setmaxnreg.inc.sync.aligned.u32 232
// PTX-LABEL: .visible .entry ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001(
// PTX:         ex2.approx.f32
// PTX:         wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16
// PTX-NOT:     __nv_

// program.json: the GEMM launch carries its dynamic shared bytes and the two tensor maps the runtime encodes.
// PROGRAM:       "format": "tessera-nvvm-program"
// PROGRAM:       "kernel": "matmul_bias0_store_k32_n132_xbf16"
// PROGRAM:       "threads": 384,
// PROGRAM-NEXT:  "shared_bytes": 196672,
// PROGRAM-NEXT:  "tensor_maps": [
// PROGRAM:         "arg": 0,
// PROGRAM:         "rows": "tokens",
// PROGRAM:         "box_rows": 128,
// PROGRAM-NEXT:    "box_cols": 64,
// PROGRAM-NEXT:    "swizzle": "128B"

// fp32 keeps float32 arithmetic: kernels/gemm.py's GEMM in GPU blocks through the SIMT lowering, a warp per
// 32 x 64 tile of y (the grid: column blocks by token blocks), x and W staged per K step of 16 with rows
// padded to 17 words (conflict-free column reads), each lane's 8 x 8 accumulators fed by 8 + 8 shared reads
// per k; each lane reads the row scales of its own rows; y stored masked past the tokens. Attention is a warp
// per (token, head).
// FP32-LABEL: gpu.func @matmul_bias0_store_k32_n64_row_scale1(
// FP32-SAME:    workgroup(%lds_mma0 : memref<32x17xf32, #gpu.address_space<workgroup>>, %lds_mma1 : memref<64x17xf32, #gpu.address_space<workgroup>>)
// FP32:         gpu.block_id y
// FP32:         scf.for
// FP32-COUNT-16: memref.load
// FP32-NOT:     memref.load
// FP32-COUNT-64: arith.mulf
// FP32-NOT:     wgmma
// FP32-LABEL: gpu.func @attention_p8_s32_h4_hkv2(
// FP32-SAME:    known_block_size = array<i32: 32, 1, 1>

// The MoE experts (kernels/moe_blocks.py): a warp per expert and group of tokens (grid y), the slot list, the
// gathered x block, the hidden chunk and the down result in shared scratch.
// MOE-LABEL: gpu.func @moe_experts_
// MOE-SAME:    workgroup(%lds_slots : memref<16xi32, #gpu.address_space<workgroup>>, %lds_xg
// MOE-SAME:    known_block_size = array<i32: 32, 1, 1>
// MOE:         gpu.block_id  y
// WRONG: tessera-opt: error: tessera.tile.kernel @{{.*}}: tiled for 'gfx942', not an arch of this target (sm_90a)
