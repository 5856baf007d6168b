// Every hand-written Graph-IR example parses, verifies and round-trips (test_graph_examples.py runs them).
// RUN: tessera-opt %root/graph_examples/mamba2.mlir | tessera-opt | FileCheck %s --check-prefix=MAMBA
// RUN: tessera-opt %root/graph_examples/attention.mlir | tessera-opt | FileCheck %s --check-prefix=ATTN
// RUN: tessera-opt %root/graph_examples/mlp.mlir | tessera-opt | FileCheck %s --check-prefix=MLP
// RUN: tessera-opt %root/graph_examples/moe.mlir | tessera-opt | FileCheck %s --check-prefix=MOE
// RUN: tessera-opt %root/graph_examples/hybrid.mlir | tessera-opt | FileCheck %s --check-prefix=HYBRID

// MAMBA: nemotron.mamba2_mixer {{.*}} conv(%{{.*}} : tensor<96x4xf32>, %{{.*}} : tensor<96xf32>)
// ATTN: nemotron.attn_gqa {{.*}} num_kv_heads = 2 : i64
// MLP: nemotron.mlp_relu2 {{.*}} up(%{{.*}} : tensor<48x32xf32>)
// MOE: nemotron.moe {{.*}} n_group = 2 : i64, topk_group = 1 : i64
// HYBRID-LABEL: func.func @forward
// HYBRID: nemotron.mamba2_mixer {{.*}} {layer = 0 : i64
// HYBRID-NEXT: %[[H1:.*]] = tessera.graph.add
// HYBRID: nemotron.attn_gqa {{.*}} {layer = 1 : i64
// HYBRID-NEXT: %[[H2:.*]] = tessera.graph.add %[[H1]]
// HYBRID: nemotron.mlp_relu2 {{.*}} {layer = 2 : i64}
// HYBRID-NEXT: %[[H3:.*]] = tessera.graph.add %[[H2]]
// HYBRID: nemotron.moe {{.*}} latent(%{{.*}} : tensor<16x32xf32>, %{{.*}} : tensor<32x16xf32>) {layer = 3 : i64
// HYBRID-NEXT: tessera.graph.add %[[H3]]
// HYBRID: tessera.graph.lm_head {{.*}} -> tensor<?x64xf32>
