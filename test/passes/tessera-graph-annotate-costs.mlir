// RUN: tessera-opt %s -p tessera-graph-annotate-costs | FileCheck %s
// Every block kind, and a second run leaves the annotations as they are:
// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p tessera-graph-annotate-costs,tessera-graph-annotate-costs | FileCheck %s --check-prefix=HYBRID

// Mamba: in_proj 132x32 = 4224, conv 96x4 + 96, 3 x 4 per-head, norm 32, out_proj 32x32 = 1024 -> 5772;
// FLOPs count the two projections only: 2 x (4224 + 1024) = 10496.
// HYBRID: nemotron.mamba2_mixer {{.*}} {tessera.params = 5772 : i64, tessera.active_params = 5772 : i64, tessera.flops_per_token = 10496 : i64, layer = 0 : i64
// Attention: q, o 32x32, k, v 16x32 -> 3072.
// HYBRID: nemotron.attn_gqa {{.*}} {tessera.params = 3072 : i64, tessera.active_params = 3072 : i64, tessera.flops_per_token = 6144 : i64, layer = 1 : i64
// HYBRID: nemotron.mlp_relu2 {{.*}} {tessera.params = 3072 : i64, tessera.active_params = 3072 : i64, tessera.flops_per_token = 6144 : i64, layer = 2 : i64}
// Latent MoE: router 132, experts 2 x 4x24x16 = 3072, shared 2560, latent 2 x 16x32 = 1024 -> 6788; a token
// reads 2 of 4 experts: 6788 - 1536 = 5252, of which 5248 are matrix weights.
// HYBRID: nemotron.moe {{.*}} {tessera.params = 6788 : i64, tessera.active_params = 5252 : i64, tessera.flops_per_token = 10496 : i64, layer = 3 : i64
// HYBRID-NOT: tessera.params

// MLP: 48x32 + 32x48 = 3072 weights, 2 FLOPs each per token.
// CHECK-LABEL: func.func @mlp
// CHECK: nemotron.mlp_relu2 {{.*}} {tessera.params = 3072 : i64, tessera.active_params = 3072 : i64, tessera.flops_per_token = 6144 : i64, layer = 0 : i64}
func.func @mlp(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>) -> tensor<?x32xf32> {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>) {layer = 0 : i64} -> tensor<?x32xf32>
  func.return %0 : tensor<?x32xf32>
}

// MoE: router 128 + bias 4 + experts 2*4*24*32 = 6144 + shared 2*40*32 = 2560 -> 8836 in all;
// a token reads top_k = 2 of 4 experts: 8836 - 6144 + 3072 = 5764, of which 5760 are matrix weights.
// CHECK-LABEL: func.func @moe
// CHECK: nemotron.moe {{.*}} {tessera.params = 8836 : i64, tessera.active_params = 5764 : i64, tessera.flops_per_token = 11520 : i64, layer = 1 : i64
func.func @moe(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>,
               %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) -> tensor<?x32xf32> {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>)
      experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 1 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64,
       norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return %0 : tensor<?x32xf32>
}
