// RUN: tessera-opt %s --split-input-file --verify-diagnostics | FileCheck %s
// One case per verifier rule of tessera.graph.

func.func @case0() {
  %w = tessera.graph.weight "" : tensor<4xf32>
  func.return
}
// CHECK: {{.*}}invalid.mlir:5:3: tessera.graph.weight: name must not be empty

// -----

func.func @case1() {
  %w = tessera.graph.weight "w" : tensor<?xf32>
  func.return
}
// CHECK: tessera.graph.weight 'w': shape [?] must be static

// -----

func.func @case2() {
  %w = tessera.graph.weight "w" : tensor<4xi32>
  func.return
}
// CHECK: tessera.graph.weight: result has element type i32, expected one of f32, bf16, f16

// -----

func.func @case3(%x: tensor<?x4xf32>) {
  %t = tessera.graph.weight "t" : tensor<11x4xf32>
  %h = tessera.graph.embedding %x, %t : (tensor<?x4xf32>, tensor<11x4xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.embedding: ids must be a 1-D integer tensor, got tensor<?x4xf32>

// -----

func.func @case4(%ids: tensor<?xi64>) {
  %t = tessera.graph.weight "t" : tensor<44xf32>
  %h = tessera.graph.embedding %ids, %t : (tensor<?xi64>, tensor<44xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.embedding: table must be [vocab, hidden], got [44]

// -----

func.func @case5(%ids: tensor<?xi64>) {
  %t = tessera.graph.weight "t" : tensor<11x4xf32>
  %h = tessera.graph.embedding %ids, %t : (tensor<?xi64>, tensor<11x4xf32>) -> tensor<?x5xf32>
  func.return
}
// CHECK: tessera.graph.embedding: result has shape [?x5], expected [?x4] ([tokens, hidden])

// -----

func.func @case6(%x: tensor<?x4xf32>) {
  %w = tessera.graph.weight "w" : tensor<5xf32>
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x4xf32>, tensor<5xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: weight has shape [5], expected [4] (one scale per feature)

// -----

func.func @case7(%x: tensor<?x4xf32>) {
  %w = tessera.graph.weight "w" : tensor<4xf32>
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xbf16>
  func.return
}
// CHECK: tessera.graph.rmsnorm: result type tensor<?x4xbf16> must equal x's tensor<?x4xf32>

// -----

func.func @case8(%x: tensor<?x4xf32>) {
  %w = tessera.graph.weight "w" : tensor<4xf32>
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 0.0 : f64} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: epsilon must be positive, got 0.0

// -----

func.func @case9(%x: tensor<?xf32>) {
  %w = tessera.graph.weight "w" : tensor<4xf32>
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?xf32>, tensor<4xf32>) -> tensor<?xf32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: x must be [tokens, features] with static features, got [?]

// -----

func.func @case10(%x: tensor<?x4xi32>) {
  %w = tessera.graph.weight "w" : tensor<4xf32>
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x4xi32>, tensor<4xf32>) -> tensor<?x4xi32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: x has element type i32, expected one of f32, bf16, f16

// -----

func.func @case11(%x: tensor<?x4xf32>, %y: tensor<?x5xf32>) {
  %s = tessera.graph.add %x, %y : (tensor<?x4xf32>, tensor<?x5xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.add: lhs tensor<?x4xf32>, rhs tensor<?x5xf32> and result tensor<?x4xf32> must match

// -----

func.func @case12(%x: tensor<?x4xf32>) {
  %w = tessera.graph.weight "w" : tensor<11x5xf32>
  %l = tessera.graph.lm_head %x, %w : (tensor<?x4xf32>, tensor<11x5xf32>) -> tensor<?x11xf32>
  func.return
}
// CHECK: tessera.graph.lm_head: weight has shape [11x5], expected [vocab, 4]

// -----

func.func @case13(%x: tensor<?x4xf32>) {
  %w = tessera.graph.weight "w" : tensor<11x4xf32>
  %l = tessera.graph.lm_head %x, %w : (tensor<?x4xf32>, tensor<11x4xf32>) -> tensor<?x12xf32>
  func.return
}
// CHECK: tessera.graph.lm_head: result has shape [?x12], expected [?x11] ([tokens, vocab])

// -----

func.func @case14(%ids: tensor<?xi64>, %table: tensor<11x4xi32>) {
  %h = tessera.graph.embedding %ids, %table : (tensor<?xi64>, tensor<11x4xi32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.embedding: table has element type i32, expected one of f32, bf16, f16

// -----

func.func @case15(%ids: tensor<?xi64>, %table: tensor<11x4xf32>) {
  %h = tessera.graph.embedding %ids, %table : (tensor<?xi64>, tensor<11x4xf32>) -> tensor<?x4xi32>
  func.return
}
// CHECK: tessera.graph.embedding: result has element type i32, expected one of f32, bf16, f16

// -----

func.func @case16(%x: tensor<?x4xf32>, %w: tensor<4xi32>) {
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x4xf32>, tensor<4xi32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: weight has element type i32, expected one of f32, bf16, f16

// -----

func.func @case17(%x: tensor<?x4xf32>, %w: tensor<11x4xi32>) {
  %l = tessera.graph.lm_head %x, %w : (tensor<?x4xf32>, tensor<11x4xi32>) -> tensor<?x11xf32>
  func.return
}
// CHECK: tessera.graph.lm_head: weight has element type i32, expected one of f32, bf16, f16

// -----

func.func @case18(%x: tensor<?x4xf32>, %w: tensor<11x4xf32>) {
  %l = tessera.graph.lm_head %x, %w : (tensor<?x4xf32>, tensor<11x4xf32>) -> tensor<?x11xi32>
  func.return
}
// CHECK: tessera.graph.lm_head: result has element type i32, expected one of f32, bf16, f16

// -----

func.func @case19(%x: tensor<?xf32>) {
  %s = tessera.graph.add %x, %x : (tensor<?xf32>, tensor<?xf32>) -> tensor<?xf32>
  func.return
}
// CHECK: tessera.graph.add: lhs must be [tokens, features] with static features, got [?]

// -----

func.func @case20(%x: tensor<?x?xf32>, %w: tensor<11x4xf32>) {
  %l = tessera.graph.lm_head %x, %w : (tensor<?x?xf32>, tensor<11x4xf32>) -> tensor<?x11xf32>
  func.return
}
// CHECK: tessera.graph.lm_head: x must be [tokens, features] with static features, got [?x?]

// -----

func.func @case21(%x: tensor<?x4xf32>, %w: tensor<11x4x1xf32>) {
  %l = tessera.graph.lm_head %x, %w : (tensor<?x4xf32>, tensor<11x4x1xf32>) -> tensor<?x11xf32>
  func.return
}
// CHECK: tessera.graph.lm_head: weight has shape [11x4x1], expected [vocab, 4]

// -----

func.func @case22(%x: tensor<?x4xf32>, %w: tensor<?xf32>) {
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f64} : (tensor<?x4xf32>, tensor<?xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: tessera.graph.rmsnorm: weight must have a static shape, got tensor<?xf32>

// -----

// Property constraints are checked while the custom format parses; the error still names the op and place.
func.func @case23(%x: tensor<?x4xf32>, %w: tensor<4xf32>) {
  %n = tessera.graph.rmsnorm %x, %w {epsilon = 1.0e-05 : f32} : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
  func.return
}
// CHECK: {{.*}}invalid.mlir:[[# @LINE - 3]]:3: tessera.graph.rmsnorm: f32 should be of base attribute f64
