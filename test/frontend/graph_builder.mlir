// The builder's Graph-IR for a small config with every layer kind (test/inputs/tiny_hybrid.yaml):
// pre-norm, mixer and residual add per layer, weights named by the Tessera layout.
// RUN: %python -m tessera.frontend.graph_builder %S/../inputs/tiny_hybrid.yaml | FileCheck %s
// RUN: %python -m tessera.frontend.graph_builder %S/../inputs/tiny_hybrid.yaml | tessera-opt | FileCheck %s

// CHECK-LABEL: func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x101xf32>
// CHECK: %[[EMB:.*]] = tessera.graph.weight "embedding.weight" : tensor<101x24xf32>
// CHECK-NEXT: %[[H0:.*]] = tessera.graph.embedding %input_ids, %[[EMB]]
// Layer 0, M: in_proj rows 2*24 + 2*2*8 + 4 = 84, conv channels 24 + 32 = 56, no conv bias.
// CHECK-NEXT: %[[N0W:.*]] = tessera.graph.weight "layers.0.norm.weight" : tensor<24xf32>
// CHECK-NEXT: %[[N0:.*]] = tessera.graph.rmsnorm %[[H0]], %[[N0W]] {epsilon = 1.000000e-05 : f64}
// CHECK-NEXT: tessera.graph.weight "layers.0.mamba2_mixer.in_proj.weight" : tensor<84x24xf32>
// CHECK-NEXT: tessera.graph.weight "layers.0.mamba2_mixer.conv1d.weight" : tensor<56x4xf32>
// CHECK-NEXT: tessera.graph.weight "layers.0.mamba2_mixer.dt_bias" : tensor<4xf32>
// CHECK:      %[[M0:.*]] = nemotron.mamba2_mixer %[[N0]] : tensor<?x24xf32> in_proj({{.*}}) conv(%{{[0-9]+}} : tensor<56x4xf32>) dt_bias
// CHECK-SAME: layer = 0 : i64, num_heads = 4 : i64, head_dim = 6 : i64, state_size = 8 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64
// CHECK-NEXT: %[[H1:.*]] = tessera.graph.add %[[H0]], %[[M0]]
// Layer 1, *: three query heads share one KV head.
// CHECK:      tessera.graph.weight "layers.1.attn_gqa.k_proj.weight" : tensor<8x24xf32>
// CHECK:      %[[A1:.*]] = nemotron.attn_gqa %{{.*}} {layer = 1 : i64, num_heads = 3 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64}
// CHECK-NEXT: %[[H2:.*]] = tessera.graph.add %[[H1]], %[[A1]]
// CHECK:      nemotron.mlp_relu2 %{{.*}} up(%{{.*}} : tensor<40x24xf32>) down(%{{.*}} : tensor<24x40xf32>) {layer = 2 : i64}
// CHECK:      tessera.graph.weight "layers.3.moe.experts.up_proj" : tensor<4x16x24xf32>
// CHECK:      nemotron.moe {{.*}} {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.000000e+00 : f64}
// CHECK:      tessera.graph.weight "final_norm.weight" : tensor<24xf32>
// CHECK:      tessera.graph.weight "lm_head.weight" : tensor<101x24xf32>
// CHECK-NEXT: %[[LOGITS:.*]] = tessera.graph.lm_head
// CHECK-NEXT: func.return %[[LOGITS]] : tensor<?x101xf32>
