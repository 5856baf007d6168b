// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=gfx942 precision=bf16},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t rocdl-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t rocdl-mlir | %python -m tessera.lowering.rocdl.pipeline gfx942 | FileCheck %s --check-prefix=ASM
// RUN: tessera-opt %t.tile.mlir -t rocdl-program | FileCheck %s --check-prefix=PROGRAM
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=gfx90a precision=fp32},tessera-tile-compute-footprint' -t rocdl-mlir | %python -m tessera.lowering.rocdl.pipeline gfx90a | FileCheck %s --check-prefix=GFX90A
// RUN: not tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule,tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86},tessera-tile-compute-footprint' -t rocdl-mlir 2>&1 | FileCheck %s --check-prefix=WRONG

// One gpu.module; every kernel takes a pointer per launch operand, then the token count and the position.
// The GEMM (kernels/gemm_blocks.py) is a dataflow kernel: a grid of 64-column blocks by 32-token blocks, one
// wave each; the SIMT lowering stages its mma operands in LDS (bf16 as i16, rows padded conflict-free) and the
// MFMA pattern reads four-element fragments from them. The chunked scan (kernels/ssd_blocks.py) multiplies
// the same way; attention (kernels/attention.py, a program per head and block of 32 queries) too, on the f32
// MFMA (its operands are f32); the experts still come from their emitter (MFMA); the rest are SIMT kernels of
// one wave per row.
// CHECK:       gpu.module @kernels
// CHECK:       gpu.func @embedding_hidden32_vocab64(%{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %{{.*}}: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 64, 1, 1>, rocdl.flat_work_group_size = "64,64"}
// CHECK-LABEL: gpu.func @matmul_bias0_store_k32_n132_row_scale1(
// CHECK-SAME:    workgroup(%lds_mma0 : memref<32x36xi16, #gpu.address_space<workgroup>>, %lds_mma1 : memref<64x36xi16, #gpu.address_space<workgroup>>)
// CHECK-SAME:    rocdl.flat_work_group_size = "64,64"
// CHECK:         gpu.block_id  y
// CHECK:         vector.load %lds_mma0[{{.*}}] : memref<32x36xi16, #gpu.address_space<workgroup>>, vector<4xi16>
// CHECK-COUNT-16: rocdl.mfma.f32.16x16x16bf16.1k
// CHECK:         gpu.return
// CHECK-LABEL: gpu.func @ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001(
// CHECK-SAME:    workgroup(
// CHECK:         rocdl.mfma.f32.16x16x16bf16.1k
// CHECK-LABEL: gpu.func @attention_p8_s32_h4_hkv2(
// CHECK-SAME:    workgroup(
// CHECK:         gpu.block_id  y
// CHECK:         rocdl.mfma.f32.16x16x4f32
// CHECK:         gpu.return
// CHECK-LABEL: gpu.func @moe_experts_ffn24_latent16_e4_topk2(
// CHECK-SAME:    workgroup(
// CHECK:         rocdl.mfma.f32.16x16x16bf16.1k

// AMDGCN for gfx942: each matrix kernel writes and reads LDS and issues bf16 MFMAs, its descriptor reserves
// exactly the LDS Tile-IR planned (tile.mlir footprint), and its metadata says wave64 and its block size.
// ASM:       .amdgcn_target "amdgcn-amd-amdhsa--gfx942"
// ASM-LABEL: matmul_bias0_store_k32_n132_row_scale1:
// ASM:         ds_write
// ASM:         ds_read2_b64
// ASM-COUNT-16: v_mfma_f32_16x16x16_bf16
// ASM:       .amdhsa_kernel matmul_bias0_store_k32_n132_row_scale1
// ASM-NEXT:    .amdhsa_group_segment_fixed_size 6912
// ASM-LABEL: ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001:
// ASM:         ds_write
// ASM:         v_mfma_f32_16x16x16_bf16
// ASM:       .amdhsa_kernel ssd_scan_l8_p8_g2_h4_statef32_n16_dtmin0p001
// ASM-NEXT:    .amdhsa_group_segment_fixed_size {{[1-9][0-9]*}}
// ASM-LABEL: attention_p8_s32_h4_hkv2:
// ASM:         ds_write
// ASM:         ds_read
// ASM:         v_mfma_f32_16x16x4_f32
// ASM:       .amdhsa_kernel attention_p8_s32_h4_hkv2
// ASM-NEXT:    .amdhsa_group_segment_fixed_size {{[1-9][0-9]*}}
// ASM-LABEL: moe_experts_ffn24_latent16_e4_topk2:
// ASM:         ds_write
// ASM:         v_mfma_f32_16x16x16_bf16
// ASM:       .amdhsa_kernel moe_experts_ffn24_latent16_e4_topk2
// ASM-NEXT:    .amdhsa_group_segment_fixed_size {{[1-9][0-9]*}}
// ASM:       amdhsa.kernels:
// ASM:         .group_segment_fixed_size: 0
// ASM:         .max_flat_workgroup_size: 64
// ASM:         .name: embedding_hidden32_vocab64
// ASM:         .wavefront_size: 64

// PROGRAM:     "format": "tessera-rocdl-program"
// PROGRAM:     "kernel": "matmul_bias0_store_k32_n132_row_scale1"
// PROGRAM:     "grid": {
// PROGRAM:     "threads": 64,
// PROGRAM-NEXT: "lds_bytes": 6912
// PROGRAM:     "layout": "rows",
// PROGRAM-NEXT: "dtype": "bf16"

// fp32 on gfx90a: the f32 MFMA keeps float32 arithmetic.
// GFX90A:    .amdgcn_target "amdgcn-amd-amdhsa--gfx90a"
// GFX90A:    v_mfma_f32_16x16x4f32

// WRONG: tessera-opt: error: tessera.tile.kernel @embedding_hidden32_vocab64: tiled for 'x86', not an arch of this target (gfx942, gfx90a)
