// One mixture-of-experts layer: 8 experts in 2 groups, top-2 from the best group, one shared expert.
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>
  %norm_w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
  %x = tessera.graph.rmsnorm %h, %norm_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %router = tessera.graph.weight "layers.0.moe.router.weight" : tensor<8x32xf32>
  %router_bias = tessera.graph.weight "layers.0.moe.router.e_score_correction_bias" : tensor<8xf32>
  %up = tessera.graph.weight "layers.0.moe.experts.up_proj" : tensor<8x24x32xf32>
  %down = tessera.graph.weight "layers.0.moe.experts.down_proj" : tensor<8x32x24xf32>
  %shared_up = tessera.graph.weight "layers.0.moe.shared_expert.up_proj.weight" : tensor<40x32xf32>
  %shared_down = tessera.graph.weight "layers.0.moe.shared_expert.down_proj.weight" : tensor<32x40xf32>
  %mixed = nemotron.moe %x : tensor<?x32xf32> router(%router : tensor<8x32xf32>, %router_bias : tensor<8xf32>)
      experts(%up : tensor<8x24x32xf32>, %down : tensor<8x32x24xf32>)
      shared(%shared_up : tensor<40x32xf32>, %shared_down : tensor<32x40xf32>)
      {layer = 0 : i64, num_experts = 8 : i64, top_k = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h, %mixed : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  %final_w = tessera.graph.weight "final_norm.weight" : tensor<32xf32>
  %f = tessera.graph.rmsnorm %h1, %final_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %f, %lm : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
