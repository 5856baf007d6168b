// One grouped-query attention layer: 4 query heads share 2 KV heads of 8 channels (no RoPE, causal).
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>
  %norm_w = tessera.graph.weight "layers.0.norm.weight" : tensor<32xf32>
  %x = tessera.graph.rmsnorm %h, %norm_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %wq = tessera.graph.weight "layers.0.attn_gqa.q_proj.weight" : tensor<32x32xf32>
  %wk = tessera.graph.weight "layers.0.attn_gqa.k_proj.weight" : tensor<16x32xf32>
  %wv = tessera.graph.weight "layers.0.attn_gqa.v_proj.weight" : tensor<16x32xf32>
  %wo = tessera.graph.weight "layers.0.attn_gqa.o_proj.weight" : tensor<32x32xf32>
  %mixed = nemotron.attn_gqa %x : tensor<?x32xf32> q(%wq : tensor<32x32xf32>) k(%wk : tensor<16x32xf32>)
      v(%wv : tensor<16x32xf32>) o(%wo : tensor<32x32xf32>)
      {layer = 0 : i64, num_heads = 4 : i64, num_kv_heads = 2 : i64, head_dim = 8 : i64} -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h, %mixed : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  %final_w = tessera.graph.weight "final_norm.weight" : tensor<32xf32>
  %f = tessera.graph.rmsnorm %h1, %final_w {epsilon = 1.0e-05 : f64} : (tensor<?x32xf32>, tensor<32xf32>) -> tensor<?x32xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %f, %lm : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
