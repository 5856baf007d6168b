// RUN: tessera-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// One case per verifier rule of the nemotron blocks.

// block: result type
func.func @case0(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x16xf32>
  func.return
}
// CHECK: {{.*}}invalid.mlir:6:3: nemotron.mamba2_mixer: result type tensor<?x16xf32> must equal x's tensor<?x32xf32>

// -----

// block: layer index
func.func @case1(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = -1 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: {{.*}}invalid.mlir:16:3: nemotron.mamba2_mixer: layer must be >= 0, got -1

// -----

// block: x shape
func.func @case2(%x: tensor<?xf32>, %wq: tensor<32x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: x must be [tokens, features] with static features, got [?]

// -----

// mamba: positive sizes
func.func @case3(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 0 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: chunk_size must be positive, got 0

// -----

// mamba: groups divide heads
func.func @case4(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 3 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: n_groups (3) must divide num_heads (4)

// -----

// mamba: epsilon
func.func @case5(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 0.0 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: epsilon must be positive, got 0.0

// -----

// mamba: time_step_min
func.func @case6(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = -1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: time_step_min must be >= 0, got -1.0

// -----

// mamba: in_proj rows
func.func @case7(%x: tensor<?x32xf32>, %w_in: tensor<130x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<130x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: in_proj_weight has shape [130x32], expected [132x32] (2*I + 2*G*N + H with I=32, G=2, N=16, H=4)

// -----

// mamba: in_proj bias
func.func @case8(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %b_in: tensor<130xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>, %b_in : tensor<130xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: in_proj_bias has shape [130], expected [132]

// -----

// mamba: conv weight
func.func @case9(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x3xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x3xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: conv_weight has shape [96x3], expected [96x4] ([I + 2*G*N, conv_kernel])

// -----

// mamba: conv bias
func.func @case10(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %b_conv: tensor<95xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>, %b_conv : tensor<95xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: conv_bias has shape [95], expected [96]

// -----

// mamba: per-head vectors
func.func @case11(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<5xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<5xf32>) A_log(%dt : tensor<5xf32>) D(%dt : tensor<5xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: dt_bias has shape [5], expected [4] (one per head)

// -----

// mamba: gated norm weight
func.func @case12(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %w_norm: tensor<16xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<16xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: norm_weight has shape [16], expected [32] (num_heads * head_dim)

// -----

// mamba: out_proj weight
func.func @case13(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x16xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x16xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: out_proj_weight has shape [32x16], expected [32x32]

// -----

// mamba: out_proj bias
func.func @case14(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %b_out: tensor<16xf32>, %dt: tensor<4xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>, %b_out : tensor<16xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: out_proj_bias has shape [16], expected [32]

// -----

// attention: positive sizes
func.func @case15(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 0 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: num_heads must be positive, got 0

// -----

// attention: kv heads divide heads
func.func @case16(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<24x32xf32>, %wv: tensor<24x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<24x32xf32>) v(%wv : tensor<24x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 3 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: num_kv_heads (3) must divide num_heads (4)

// -----

// attention: q
func.func @case17(%x: tensor<?x32xf32>, %wq: tensor<24x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<24x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: q_weight has shape [24x32], expected [32x32] (num_heads * head_dim rows)

// -----

// attention: k
func.func @case18(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<8x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<8x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: k_weight has shape [8x32], expected [16x32] (num_kv_heads * head_dim)

// -----

// attention: v
func.func @case19(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<8x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<8x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: v_weight has shape [8x32], expected [16x32] (num_kv_heads * head_dim)

// -----

// attention: o
func.func @case20(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x24xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x24xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.attn_gqa: o_weight has shape [32x24], expected [32x32]

// -----

// mlp: up
func.func @case21(%x: tensor<?x32xf32>, %up: tensor<48x16xf32>, %down: tensor<32x48xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x16xf32>) down(%down : tensor<32x48xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: up_weight must be [ffn, 32], got tensor<48x16xf32>

// -----

// mlp: down
func.func @case22(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x40xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x40xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: down_weight has shape [32x40], expected [32x48] ([hidden, ffn])

// -----

// mlp: up bias
func.func @case23(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>, %ub: tensor<40xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>, %ub : tensor<40xf32>) down(%down : tensor<32x48xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: up_bias has shape [40], expected [48]

// -----

// mlp: down bias
func.func @case24(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>, %db: tensor<40xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>, %db : tensor<40xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: down_bias has shape [40], expected [32]

// -----

// moe: positive sizes
func.func @case25(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 0 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: top_k must be positive, got 0

// -----

// moe: top_k <= experts
func.func @case26(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 5 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: top_k (5) must not exceed num_experts (4)

// -----

// moe: groups divide experts
func.func @case27(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 3 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: n_group (3) must divide num_experts (4)

// -----

// moe: topk_group <= n_group
func.func @case28(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 2 : i64, topk_group = 3 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: topk_group (3) must not exceed n_group (2)

// -----

// moe: router weight
func.func @case29(%x: tensor<?x32xf32>, %r: tensor<5x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<5x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: router_weight has shape [5x32], expected [4x32] ([num_experts, hidden])

// -----

// moe: router bias
func.func @case30(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<5xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<5xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: router_bias has shape [5], expected [4] (one per expert)

// -----

// moe: latent in
func.func @case31(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x16xf32>, %down: tensor<4x16x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>, %lin: tensor<16x8xf32>, %lout: tensor<32x16xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x16xf32>, %down : tensor<4x16x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>) latent(%lin : tensor<16x8xf32>, %lout : tensor<32x16xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: latent_in_weight must be [latent, 32]

// -----

// moe: latent out
func.func @case32(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x16xf32>, %down: tensor<4x16x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>, %lin: tensor<16x32xf32>, %lout: tensor<32x8xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x16xf32>, %down : tensor<4x16x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>) latent(%lin : tensor<16x32xf32>, %lout : tensor<32x8xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: latent_out_weight has shape [32x8], expected [32x16]

// -----

// moe: experts up
func.func @case33(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x16xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x16xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: experts_up must be [4, ffn, 32] (num_experts, ffn, latent), got tensor<4x24x16xf32>

// -----

// moe: experts down
func.func @case34(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x20xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x20xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: experts_down has shape [4x32x20], expected [4x32x24] ([experts, latent, ffn])

// -----

// moe: shared up
func.func @case35(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x16xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x16xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: shared_up_weight must be [shared_ffn, 32]

// -----

// moe: shared down
func.func @case36(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x24xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x24xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: shared_down_weight has shape [32x24], expected [32x40]

// -----

// moe: top_k within the kept groups
func.func @case37(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 3 : i64, n_group = 2 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: top_k (3) must not exceed the experts of the kept groups, topk_group * num_experts / n_group = 2

// -----

// moe: latent projections come in pairs (only the generic form can write one alone)
func.func @case38(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x16xf32>, %down: tensor<4x16x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>, %li: tensor<16x32xf32>) {
  %0 = "nemotron.moe"(%x, %r, %rb, %up, %down, %su, %sd, %li) <{operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 1, 1, 1, 0>, layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64}>
      : (tensor<?x32xf32>, tensor<4x32xf32>, tensor<4xf32>, tensor<4x24x16xf32>, tensor<4x16x24xf32>, tensor<40x32xf32>, tensor<32x40xf32>, tensor<16x32xf32>) -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: latent_in_weight and latent_out_weight come together

// -----

// block: x element type
func.func @case39(%x: tensor<?x32xi32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xi32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>) {layer = 2 : i64} -> tensor<?x32xi32>
  func.return
}
// CHECK: nemotron.mlp_relu2: x has element type i32, expected one of f32, bf16, f16

// -----

// block: weight element type (every weight operand, optional ones included)
func.func @case40(%x: tensor<?x32xf32>, %up: tensor<48x32xf32>, %down: tensor<32x48xf32>, %bd: tensor<32xi8>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>, %bd : tensor<32xi8>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: down_bias has element type i8, expected one of f32, bf16, f16

// -----

// mamba: A_log, one per head
func.func @case41(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %bad: tensor<2xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%bad : tensor<2xf32>) D(%dt : tensor<4xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: A_log has shape [2], expected [4] (one per head)

// -----

// mamba: D, one per head
func.func @case42(%x: tensor<?x32xf32>, %w_in: tensor<132x32xf32>, %w_conv: tensor<96x4xf32>, %w_out: tensor<32x32xf32>, %dt: tensor<4xf32>, %bad: tensor<4x1xf32>, %w_norm: tensor<32xf32>) {
  %0 = nemotron.mamba2_mixer %x : tensor<?x32xf32> in_proj(%w_in : tensor<132x32xf32>) conv(%w_conv : tensor<96x4xf32>) dt_bias(%dt : tensor<4xf32>) A_log(%dt : tensor<4xf32>) D(%bad : tensor<4x1xf32>) norm(%w_norm : tensor<32xf32>) out_proj(%w_out : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64, conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mamba2_mixer: D has shape [4x1], expected [4] (one per head)

// -----

// attention: result type
func.func @case43(%x: tensor<?x32xf32>, %wq: tensor<32x32xf32>, %wk: tensor<16x32xf32>, %wv: tensor<16x32xf32>, %wo: tensor<32x32xf32>) {
  %0 = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>) v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xbf16>
  func.return
}
// CHECK: nemotron.attn_gqa: result type tensor<?x32xbf16> must equal x's tensor<?x32xf32>

// -----

// moe: n_group positive (checked before it divides anything)
func.func @case44(%x: tensor<?x32xf32>, %r: tensor<4x32xf32>, %rb: tensor<4xf32>, %up: tensor<4x24x32xf32>, %down: tensor<4x32x24xf32>, %su: tensor<40x32xf32>, %sd: tensor<32x40xf32>) {
  %0 = nemotron.moe %x : tensor<?x32xf32> router(%r : tensor<4x32xf32>, %rb : tensor<4xf32>) experts(%up : tensor<4x24x32xf32>, %down : tensor<4x32x24xf32>) shared(%su : tensor<40x32xf32>, %sd : tensor<32x40xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 0 : i64, topk_group = 1 : i64, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.moe: n_group must be positive, got 0

// -----

// block: weights have static shapes
func.func @case45(%x: tensor<?x32xf32>, %up: tensor<?x32xf32>, %down: tensor<32x48xf32>) {
  %0 = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<?x32xf32>) down(%down : tensor<32x48xf32>) {layer = 2 : i64} -> tensor<?x32xf32>
  func.return
}
// CHECK: nemotron.mlp_relu2: up_weight must have a static shape, got tensor<?x32xf32>
