// One Mamba-2 layer whose SSD scan fits the x86 AMX variant (kernels/ssd_matrix.py: P a multiple of 16, N of 32):
// hidden 32, 2 heads x 16 channels, 1 group, state 32, chunk 16; in_proj rows 2*32 + 2*32 + 2 = 130, conv channels 96.
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>
  %norm_w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
  %x = tessera.graph.rmsnorm %h, %norm_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %in_proj = tessera.graph.weight "layers.0.mamba2_mixer.in_proj.weight" : tensor<130x32xf32>
  %conv = tessera.graph.weight "layers.0.mamba2_mixer.conv1d.weight" : tensor<96x4xf32>
  %conv_b = tessera.graph.weight "layers.0.mamba2_mixer.conv1d.bias" : tensor<96xf32>
  %dt_bias = tessera.graph.weight "layers.0.mamba2_mixer.dt_bias" : tensor<2xf32>
  %a_log = tessera.graph.weight "layers.0.mamba2_mixer.A_log" : tensor<2xf32>
  %d = tessera.graph.weight "layers.0.mamba2_mixer.D" : tensor<2xf32>
  %gate_norm = tessera.graph.weight "layers.0.mamba2_mixer.norm.weight" : tensor<32xf32>
  %out_proj = tessera.graph.weight "layers.0.mamba2_mixer.out_proj.weight" : tensor<32x32xf32>
  %mixed = nemotron.mamba2_mixer %x : tensor<?x32xf32>
      in_proj(%in_proj : tensor<130x32xf32>) conv(%conv : tensor<96x4xf32>, %conv_b : tensor<96xf32>)
      dt_bias(%dt_bias : tensor<2xf32>) A_log(%a_log : tensor<2xf32>) D(%d : tensor<2xf32>)
      norm(%gate_norm : tensor<32xf32>) out_proj(%out_proj : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 2 : i64, head_dim = 16 : i64, state_size = 32 : i64, n_groups = 1 : i64,
       conv_kernel = 4 : i64, chunk_size = 16 : i64, epsilon = 1.0e-05 : f64, time_step_min = 1.0e-03 : f64}
      -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h, %mixed : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  %final_w = tessera.graph.weight "final_norm.weight" : tensor<32xf32>
  %f = tessera.graph.rmsnorm %h1, %final_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %f, %lm : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
