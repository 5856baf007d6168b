// A four-layer hybrid, pattern "M*-E": Mamba-2, attention, squared-ReLU MLP, MoE, each pre-normed and
// added to the residual stream. Hidden 32, vocab 64; the MoE runs its experts in a 16-wide latent space.
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h0 = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>

  // Layer 0 (M): 4 heads x 8 channels, 2 groups, state 16 -> in_proj rows 2*32 + 2*2*16 + 4 = 132, conv channels 96.
  %norm0_w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
  %x0 = tessera.graph.rmsnorm %h0, %norm0_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %in_proj = tessera.graph.weight "layers.0.mamba2_mixer.in_proj.weight" : tensor<132x32xf32>
  %conv = tessera.graph.weight "layers.0.mamba2_mixer.conv1d.weight" : tensor<96x4xf32>
  %conv_b = tessera.graph.weight "layers.0.mamba2_mixer.conv1d.bias" : tensor<96xf32>
  %dt_bias = tessera.graph.weight "layers.0.mamba2_mixer.dt_bias" : tensor<4xf32>
  %a_log = tessera.graph.weight "layers.0.mamba2_mixer.A_log" : tensor<4xf32>
  %d = tessera.graph.weight "layers.0.mamba2_mixer.D" : tensor<4xf32>
  %gate_norm = tessera.graph.weight "layers.0.mamba2_mixer.norm.weight" : tensor<32xf32>
  %out_proj = tessera.graph.weight "layers.0.mamba2_mixer.out_proj.weight" : tensor<32x32xf32>
  %m0 = nemotron.mamba2_mixer %x0 : tensor<?x32xf32>
      in_proj(%in_proj : tensor<132x32xf32>) conv(%conv : tensor<96x4xf32>, %conv_b : tensor<96xf32>)
      dt_bias(%dt_bias : tensor<4xf32>) A_log(%a_log : tensor<4xf32>) D(%d : tensor<4xf32>)
      norm(%gate_norm : tensor<32xf32>) out_proj(%out_proj : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, head_dim = 8 : i64, state_size = 16 : i64, n_groups = 2 : i64,
       conv_kernel = 4 : i64, chunk_size = 8 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64}
      -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h0, %m0 : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>

  // Layer 1 (*): 4 query heads share 2 KV heads of 8 channels.
  %norm1_w = tessera.graph.weight "layers.1.norm.weight" : tensor<32xf32>
  %x1 = tessera.graph.rmsnorm %h1, %norm1_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %wq = tessera.graph.weight "layers.1.attn_gqa.q_proj.weight" : tensor<32x32xf32>
  %wk = tessera.graph.weight "layers.1.attn_gqa.k_proj.weight" : tensor<16x32xf32>
  %wv = tessera.graph.weight "layers.1.attn_gqa.v_proj.weight" : tensor<16x32xf32>
  %wo = tessera.graph.weight "layers.1.attn_gqa.o_proj.weight" : tensor<32x32xf32>
  %m1 = nemotron.attn_gqa %x1 : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>)
      v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 1 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  %h2 = tessera.graph.add %h1, %m1 : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>

  // Layer 2 (-): ffn 48.
  %norm2_w = tessera.graph.weight "layers.2.norm.weight" : tensor<32xf32>
  %x2 = tessera.graph.rmsnorm %h2, %norm2_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %up = tessera.graph.weight "layers.2.mlp_relu2.up_proj.weight" : tensor<48x32xf32>
  %down = tessera.graph.weight "layers.2.mlp_relu2.down_proj.weight" : tensor<32x48xf32>
  %m2 = nemotron.mlp_relu2 %x2 : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>)
      {layer = 2 : i64} -> tensor<?x32xf32>
  %h3 = tessera.graph.add %h2, %m2 : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>

  // Layer 3 (E): 4 experts in 2 groups, top-2 from the best group, experts in a latent space of 16.
  %norm3_w = tessera.graph.weight "layers.3.norm.weight" : tensor<32xf32>
  %x3 = tessera.graph.rmsnorm %h3, %norm3_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %router = tessera.graph.weight "layers.3.moe.router.weight" : tensor<4x32xf32>
  %router_bias = tessera.graph.weight "layers.3.moe.router.e_score_correction_bias" : tensor<4xf32>
  %experts_up = tessera.graph.weight "layers.3.moe.experts.up_proj" : tensor<4x24x16xf32>
  %experts_down = tessera.graph.weight "layers.3.moe.experts.down_proj" : tensor<4x16x24xf32>
  %shared_up = tessera.graph.weight "layers.3.moe.shared_expert.up_proj.weight" : tensor<40x32xf32>
  %shared_down = tessera.graph.weight "layers.3.moe.shared_expert.down_proj.weight" : tensor<32x40xf32>
  %latent_in = tessera.graph.weight "layers.3.moe.fc1_latent_proj.weight" : tensor<16x32xf32>
  %latent_out = tessera.graph.weight "layers.3.moe.fc2_latent_proj.weight" : tensor<32x16xf32>
  %m3 = nemotron.moe %x3 : tensor<?x32xf32> router(%router : tensor<4x32xf32>, %router_bias : tensor<4xf32>)
      experts(%experts_up : tensor<4x24x16xf32>, %experts_down : tensor<4x16x24xf32>)
      shared(%shared_up : tensor<40x32xf32>, %shared_down : tensor<32x40xf32>)
      latent(%latent_in : tensor<16x32xf32>, %latent_out : tensor<32x16xf32>)
      {layer = 3 : i64, num_experts = 4 : i64, top_k = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} -> tensor<?x32xf32>
  %h4 = tessera.graph.add %h3, %m3 : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>

  %final_w = tessera.graph.weight "final_norm.weight" : tensor<32xf32>
  %f = tessera.graph.rmsnorm %h4, %final_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %f, %lm : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
