// One squared-ReLU MLP layer: down(relu(up(x))^2), ffn 48.
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>
  %norm_w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
  %x = tessera.graph.rmsnorm %h, %norm_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %up = tessera.graph.weight "layers.0.mlp_relu2.up_proj.weight" : tensor<48x32xf32>
  %down = tessera.graph.weight "layers.0.mlp_relu2.down_proj.weight" : tensor<32x48xf32>
  %mixed = nemotron.mlp_relu2 %x : tensor<?x32xf32> up(%up : tensor<48x32xf32>) down(%down : tensor<32x48xf32>)
      {layer = 0 : i64} -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h, %mixed : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  %final_w = tessera.graph.weight "final_norm.weight" : tensor<32xf32>
  %f = tessera.graph.rmsnorm %h1, %final_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %f, %lm : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
