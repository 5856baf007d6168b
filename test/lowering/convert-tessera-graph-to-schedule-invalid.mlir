// RUN: not tessera-opt %s -p convert-tessera-graph-to-schedule 2>&1 | FileCheck %s
// An add that is not a residual around a block has no schedule (it would need a kernel of its own):
// one line naming the op, no traceback.

// CHECK: tessera-opt: error: tessera.graph.add: only residual adds h + block(rmsnorm(h)) have a schedule
// CHECK-NOT: Traceback
func.func @forward(%input_ids: tensor<?xi64>) -> tensor<?x64xf32> {
  %embedding = tessera.graph.weight "embedding.weight" : tensor<64x32xf32>
  %h0 = tessera.graph.embedding %input_ids, %embedding : (tensor<?xi64>, tensor<64x32xf32>) -> tensor<?x32xf32>
  %h1 = tessera.graph.add %h0, %h0 : (tensor<?x32xf32>, tensor<?x32xf32>) -> tensor<?x32xf32>
  %head = tessera.graph.weight "lm_head.weight" : tensor<64x32xf32>
  %logits = tessera.graph.lm_head %h1, %head : (tensor<?x32xf32>, tensor<64x32xf32>) -> tensor<?x64xf32>
  func.return %logits : tensor<?x64xf32>
}
