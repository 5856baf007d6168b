// RUN: tessera-opt %s --split-input-file | FileCheck %s
// RUN: tessera-opt %s --split-input-file --print-op-generic | tessera-opt --split-input-file | FileCheck %s

// Every block, with and without its optional operands (biases, the MoE latent projections).

// CHECK-LABEL: func.func @mamba2
// CHECK: nemotron.mamba2_mixer %{{.*}} : tensor<?x32xf32> in_proj(%{{.*}} : tensor<132x32xf32>) conv(%{{.*}} : tensor<96x4xf32>) dt_bias(%{{.*}} : tensor<4xf32>) A_log(%{{.*}} : tensor<4xf32>) D(%{{.*}} : tensor<4xf32>) norm(%{{.*}} : tensor<32xf32>) out_proj(%{{.*}} : tensor<32x32xf32>) {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.000000e-05 : f64, time_step_min = 1.000000e-03 : f64} -> tensor<?x32xf32>
// CHECK: nemotron.mamba2_mixer %{{.*}} : tensor<?x32xf32> in_proj(%{{.*}} : tensor<132x32xf32>, %{{.*}} : tensor<132xf32>) conv(%{{.*}} : tensor<96x4xf32>, %{{.*}} : tensor<96xf32>) dt_bias({{.*}}) A_log({{.*}}) D({{.*}}) norm({{.*}}) out_proj(%{{.*}} : tensor<32x32xf32>, %{{.*}} : tensor<32xf32>) {layer = 1 : i64
func.func @mamba2(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %b_in: tensor<132xf32>, %w_conv: tensor<96x4xf32>,
                  %b_conv: tensor<96xf32>, %heads: tensor<4xf32>, %w_norm: tensor<32xf32>, %w_out: tensor<32x32xf32>,
                  %b_out: tensor<32xf32>) -> tensor<?x32xf32> {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>)
      dt_bias(%heads : tensor<4xf32>) A_log(%heads : tensor<4xf32>) D(%heads : tensor<4xf32>) norm(%w_norm : tensor<32xf32>)
      out_proj(%w_out : tensor<32x32xf32>) {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64,
      n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64}
      -> tensor<?x32xf32>
  %1 = nemotron.mamba2_mixer %0 : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>, %b_in : tensor<132xf32>)
      conv(%w_conv : tensor<96x4xf32>, %b_conv : tensor<96xf32>) dt_bias(%heads : tensor<4xf32>) A_log(%heads : tensor<4xf32>)
      D(%heads : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>, %b_out : tensor<32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64,
      conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 0.0 : f64} -> tensor<?x32xf32>
  func.return %1 : tensor<?x32xf32>
}

// -----

// CHECK-LABEL: func.func @attention
// CHECK: nemotron.attn_gqa %{{.*}} : tensor<?x32xbf16> q(%{{.*}} : tensor<32x32xbf16>) k(%{{.*}} : tensor<8x32xbf16>) v(%{{.*}} : tensor<8x32xbf16>) o(%{{.*}} : tensor<32x32xbf16>) {layer = 3 : i64, num_heads = 4 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64} -> tensor<?x32xbf16>
func.func @attention(%x: tensor<?x32xbf16>, %wq: tensor<32x32xbf16>, %wkv: tensor<8x32xbf16>) -> tensor<?x32xbf16> {
  %0 = nemotron.attn_gqa %x : tensor<?x32xbf16> q(%wq : tensor<32x32xbf16>) k(%wkv : tensor<8x32xbf16>)
      v(%wkv : tensor<8x32xbf16>) o(%wq : tensor<32x32xbf16>)
      {layer = 3 : i64, num_heads = 4 : i64, num_kv_heads = 1 : i64, head_dim = 8 : i64} -> tensor<?x32xbf16>
  func.return %0 : tensor<?x32xbf16>
}

// -----

// CHECK-LABEL: func.func @mlp
// CHECK: nemotron.mlp_relu2 %{{.*}} : tensor<?x32xf32> up(%{{.*}} : tensor<48x32xf32>) down(%{{.*}} : tensor<32x48xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
// CHECK: nemotron.mlp_relu2 %{{.*}} : tensor<?x32xf32> up(%{{.*}} : tensor<48x32xf32>, %{{.*}} : tensor<48xf32>) down(%{{.*}} : tensor<32x48xf32>, %{{.*}} : tensor<32xf32>) {layer = 4 : i64} -> tensor<?x32xf32>
func.func @mlp(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>, %bu: tensor<48xf32>,
               %bd: tensor<32xf32>) -> tensor<?x32xf32> {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>)
      {layer = 2 : i64} -> tensor<?x32xf32>
  %1 = nemotron.mlp_relu2 %0 : tensor<?x32xf32> up(%up : tensor<48x32xf32>, %bu : tensor<48xf32>)
      down(%down : tensor<32x48xf32>, %bd : tensor<32xf32>) {layer = 4 : i64} -> tensor<?x32xf32>
  func.return %1 : tensor<?x32xf32>
}

// -----

// CHECK-LABEL: func.func @moe
// CHECK: nemotron.moe %{{.*}} : tensor<?x32xf32> router(%{{.*}} : tensor<4x32xf32>, %{{.*}} : tensor<4xf32>) experts(%{{.*}} : tensor<4x24x32xf32>, %{{.*}} : tensor<4x32x24xf32>) shared(%{{.*}} : tensor<40x32xf32>, %{{.*}} : tensor<32x40xf32>) {layer = 5 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 2.500000e+00 : f64} -> tensor<?x32xf32>
// CHECK: nemotron.moe %{{.*}} : tensor<?x32xf32> router({{.*}}) experts(%{{.*}} : tensor<4x24x16xf32>, %{{.*}} : tensor<4x16x24xf32>) shared({{.*}}) latent(%{{.*}} : tensor<16x32xf32>, %{{.*}} : tensor<32x16xf32>) {layer = 6 : i64, {{.*}}norm_topk_prob = false
func.func @moe(%x: tensor<?x32xf32>, %router: tensor<4x32xf32>, %bias: tensor<4xf32>, %up: tensor<4x24x32xf32>,
               %down: tensor<4x32x24xf32>, %s_up: tensor<40x32xf32>, %s_down: tensor<32x40xf32>,
               %l_up: tensor<4x24x16xf32>, %l_down: tensor<4x16x24xf32>, %l_in: tensor<16x32xf32>,
               %l_out: tensor<32x16xf32>) -> tensor<?x32xf32> {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%router : tensor<4x32xf32>, %bias : tensor<4xf32>)
      experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%s_up : tensor<40x32xf32>, %s_down : tensor<32x40xf32>)
      {layer = 5 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} -> tensor<?x32xf32>
  %1 = nemotron.moe %0 : tensor<?x32xf32> router(%router : tensor<4x32xf32>, %bias : tensor<4xf32>)
      experts(%l_up : tensor<4x24x16xf32>, %l_down : tensor<4x16x24xf32>) shared(%s_up : tensor<40x32xf32>, %s_down : tensor<32x40xf32>)
      latent(%l_in : tensor<16x32xf32>, %l_out : tensor<32x16xf32>)
      {layer = 6 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64,
       norm_topk_prob = false, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return %1 : tensor<?x32xf32>
}
