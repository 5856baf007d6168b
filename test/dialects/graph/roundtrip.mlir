// RUN: tessera-opt %s | FileCheck %s
// RUN: tessera-opt %s | tessera-opt | FileCheck %s
// RUN: tessera-opt %s --print-op-generic | tessera-opt | FileCheck %s

// CHECK-LABEL: func.func @generic_ops
func.func @generic_ops(%ids: tensor<?xi64>) -> tensor<?x11xf32> {
  // CHECK: %{{.*}} = tessera.graph.weight "embedding.weight" : tensor<11x4xf32>
  %table = tessera.graph.weight "embedding.weight" : tensor<11x4xf32>
  // CHECK-NEXT: tessera.graph.embedding %{{.*}}, %{{.*}} : (tensor<?xi64>, tensor<11x4xf32>) -> tensor<?x4xf32>
  %h = tessera.graph.embedding %ids, %table : (tensor<?xi64>, tensor<11x4xf32>) -> tensor<?x4xf32>
  %w = tessera.graph.weight "final_norm.weight" : tensor<4xbf16>
  // CHECK: tessera.graph.rmsnorm %{{.*}}, %{{.*}} {epsilon = 1.000000e-06 : f64} : (tensor<?x4xf32>, tensor<4xbf16>) -> tensor<?x4xf32>
  %n = tessera.graph.rmsnorm %h, %w {epsilon = 1.0e-06 : f64} : (tensor<?x4xf32>, tensor<4xbf16>) -> tensor<?x4xf32>
  // CHECK-NEXT: tessera.graph.add %{{.*}}, %{{.*}} : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
  %s = tessera.graph.add %h, %n : (tensor<?x4xf32>, tensor<?x4xf32>) -> tensor<?x4xf32>
  %lm = tessera.graph.weight "lm_head.weight" : tensor<11x4xf32>
  // CHECK: tessera.graph.lm_head %{{.*}}, %{{.*}} : (tensor<?x4xf32>, tensor<11x4xf32>) -> tensor<?x11xf32>
  %logits = tessera.graph.lm_head %s, %lm : (tensor<?x4xf32>, tensor<11x4xf32>) -> tensor<?x11xf32>
  func.return %logits : tensor<?x11xf32>
}
