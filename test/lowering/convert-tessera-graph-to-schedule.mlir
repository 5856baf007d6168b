// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32}' | FileCheck %s
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{mode=decode ssm-state-dtype=bf16 chunk-size=4}' | FileCheck %s --check-prefix=DECODE
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{activation-dtype=bf16}' | FileCheck %s --check-prefix=BF16

// State is declared once: conv/SSM state for the Mamba layer, a KV cache sized by max-seq-len.
// CHECK:      tessera.schedule.state @layers.0.conv_state : memref<96x3xf32> {kind = "conv_state", layer = 0 : i64}
// CHECK-NEXT: tessera.schedule.state @layers.0.ssm_state : memref<4x8x16xf32> {kind = "ssm_state", layer = 0 : i64}
// CHECK-NEXT: tessera.schedule.state @layers.1.k_cache : memref<32x2x8xf32>
// CHECK-NEXT: tessera.schedule.state @layers.1.v_cache : memref<32x2x8xf32>

// Prefill. The norm before the Mamba mixer is folded into in_proj: rms_scale computes 1/rms per token,
// the norm's scale multiplies in_proj's columns at load, the matmul scales its rows.
// CHECK-LABEL: func.func @prefill
// CHECK:       %[[H:.*]] = tessera.schedule.alloc : memref<?x32xf32>
// CHECK-NEXT:  tessera.schedule.embedding
// CHECK-NEXT:  %[[RSTD:.*]] = tessera.schedule.alloc : memref<?xf32>
// CHECK-NEXT:  tessera.schedule.rms_scale ins(%[[H]] : memref<?x32xf32>) outs(%[[RSTD]] : memref<?xf32>)
// CHECK:       tessera.schedule.weight "layers.0.mamba2_mixer.in_proj.weight" {column_scale = "layers.0.norm.weight"}
// CHECK-NEXT:  tessera.schedule.matmul ins(%[[H]], %{{.*}}, %[[RSTD]] : {{.*}}) outs(%[[ZX:.*]] : memref<?x132xf32>) {epilogue = "store", row_scale}
// The mixer: conv, chunked scan, gated norm, and out_proj accumulating into the residual stream %[[H]]
// (the residual add is fused into the epilogue).
// CHECK:       tessera.schedule.conv_silu ins(%[[ZX]]
// CHECK:       tessera.schedule.ssd_scan ins(%[[ZX]], {{.*}}chunk_size = 8 : i64
// CHECK:       tessera.schedule.gated_rmsnorm ins(%[[ZX]]
// CHECK:       tessera.schedule.matmul {{.*}} outs(%[[H]] : memref<?x32xf32>) {epilogue = "accumulate"}
// Attention: one QKV projection from a weight fused at load (and scaled by the folded norm), the cache
// append, attention, o_proj.
// CHECK:       tessera.schedule.weight "layers.1.attn_gqa.qkv_proj.weight" {parts = ["layers.1.attn_gqa.q_proj.weight", "layers.1.attn_gqa.k_proj.weight", "layers.1.attn_gqa.v_proj.weight"], column_scale = "layers.1.norm.weight"} : memref<64x32xf32>
// CHECK:       tessera.schedule.kv_append
// CHECK-NEXT:  tessera.schedule.alloc
// CHECK-NEXT:  tessera.schedule.attention
// MLP: ReLU² in the up projection's epilogue.
// CHECK:       {epilogue = "relu2", row_scale}
// CHECK-NEXT:  tessera.schedule.weight "layers.2.mlp_relu2.down_proj.weight"
// CHECK-NEXT:  tessera.schedule.matmul {{.*}} outs(%[[H]] : memref<?x32xf32>) {epilogue = "accumulate"}
// MoE reads its input three times (router, latent projection, shared expert): its norm stays a step.
// Experts run expert-major into per-slot outputs, which moe_combine weighs and sums.
// CHECK:       tessera.schedule.rmsnorm ins(%[[H]]
// CHECK:       tessera.schedule.moe_router
// CHECK:       tessera.schedule.moe_experts ins({{.*}}) outs(%[[CONTRIB:.*]] : memref<?x32xf32>)
// CHECK-NEXT:  %[[ROUTED:.*]] = tessera.schedule.alloc : memref<?x16xf32>
// CHECK-NEXT:  tessera.schedule.moe_combine ins(%[[CONTRIB]], {{.*}}) outs(%[[ROUTED]] : memref<?x16xf32>) {{.*}}epilogue = "store"
// CHECK:       tessera.schedule.weight "lm_head.weight" {column_scale = "final_norm.weight"}
// CHECK:       func.return
// CHECK-LABEL: func.func @decode
// CHECK:       tessera.schedule.ssd_step

// DECODE:     tessera.schedule.state @layers.0.ssm_state : memref<4x8x16xbf16>
// DECODE-NOT: func.func @prefill
// DECODE:     func.func @decode
// DECODE-NOT: tessera.schedule.ssd_scan
// DECODE:     tessera.schedule.ssd_step {{.*}}chunk_size = 4 : i64

// With bf16 activations every norm is a step whose output is rounded once, and the buffers that feed
// projections are bf16; the residual stream and the scan's buffers stay f32.
// BF16-NOT:   tessera.schedule.rms_scale
// BF16:       tessera.schedule.rmsnorm ins(%{{.*}} : memref<?x32xf32>, memref<32xf32>) outs(%{{.*}} : memref<?x32xbf16>)
// BF16:       tessera.schedule.matmul ins(%{{.*}}, %{{.*}} : memref<?x32xbf16>, memref<132x32xf32>) outs(%{{.*}} : memref<?x132xf32>)
// BF16:       tessera.schedule.gated_rmsnorm {{.*}} outs(%{{.*}} : memref<?x32xbf16>)
