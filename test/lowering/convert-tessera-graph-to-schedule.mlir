// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32}' | FileCheck %s
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{mode=decode ssm-state-dtype=bf16 chunk-size=4}' | FileCheck %s --check-prefix=DECODE

// State is declared once: conv/SSM state for the Mamba layer, a KV cache sized by max-seq-len.
// CHECK:      tessera.schedule.state "layers.0.conv_state" : memref<96x3xf32> {kind = "conv_state", layer = 0 : i64}
// CHECK-NEXT: tessera.schedule.state "layers.0.ssm_state" : memref<4x8x16xf32> {kind = "ssm_state", layer = 0 : i64}
// CHECK-NEXT: tessera.schedule.state "layers.1.k_cache" : memref<32x2x8xf32>
// CHECK-NEXT: tessera.schedule.state "layers.1.v_cache" : memref<32x2x8xf32>

// Prefill: the Mamba mixer as projection, conv, chunked scan, gated norm, and out_proj accumulating
// into the residual stream %[[H]] (the residual add is fused into the epilogue).
// CHECK-LABEL: func.func @prefill
// CHECK:       %[[H:.*]] = tessera.schedule.alloc : memref<?x32xf32>
// CHECK-NEXT:  tessera.schedule.embedding
// CHECK:       tessera.schedule.rmsnorm ins(%[[H]]
// CHECK:       tessera.schedule.matmul {{.*}} outs(%[[ZX:.*]] : memref<?x132xf32>) {epilogue = "store"}
// CHECK:       tessera.schedule.conv_silu ins(%[[ZX]]
// CHECK:       tessera.schedule.ssd_scan ins(%[[ZX]], {{.*}}chunk_size = 8 : i64
// CHECK:       tessera.schedule.gated_rmsnorm ins(%[[ZX]]
// CHECK:       tessera.schedule.matmul {{.*}} outs(%[[H]] : memref<?x32xf32>) {epilogue = "accumulate"}
// Attention: one QKV projection from a weight fused at load, the cache append, attention, o_proj.
// CHECK:       tessera.schedule.weight "layers.1.attn_gqa.qkv_proj.weight" {parts = ["layers.1.attn_gqa.q_proj.weight", "layers.1.attn_gqa.k_proj.weight", "layers.1.attn_gqa.v_proj.weight"]} : memref<64x32xf32>
// CHECK:       tessera.schedule.kv_append
// CHECK-NEXT:  tessera.schedule.alloc
// CHECK-NEXT:  tessera.schedule.attention
// MLP: ReLU² in the up projection's epilogue.
// CHECK:       {epilogue = "relu2"}
// CHECK-NEXT:  tessera.schedule.weight "layers.2.mlp_relu2.down_proj.weight"
// CHECK-NEXT:  tessera.schedule.matmul {{.*}} outs(%[[H]] : memref<?x32xf32>) {epilogue = "accumulate"}
// MoE: router logits, top-k, experts in the latent space, back out, then the shared expert.
// CHECK:       tessera.schedule.moe_router
// CHECK:       tessera.schedule.moe_experts {{.*}} epilogue = "store"
// CHECK:       func.return
// CHECK-LABEL: func.func @decode
// CHECK:       tessera.schedule.ssd_step

// DECODE:     tessera.schedule.state "layers.0.ssm_state" : memref<4x8x16xbf16>
// DECODE-NOT: func.func @prefill
// DECODE:     func.func @decode
// DECODE-NOT: tessera.schedule.ssd_scan
// DECODE:     tessera.schedule.ssd_step {{.*}}chunk_size = 4 : i64
