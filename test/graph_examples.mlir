// Every hand-written Graph-IR example parses, verifies and round-trips (test_graph_examples.py runs them).
// RUN: tessera-opt %root/graph_examples/mamba2.mlir | tessera-opt | FileCheck %s --check-prefix=MAMBA
// RUN: tessera-opt %root/graph_examples/attention.mlir | tessera-opt | FileCheck %s --check-prefix=ATTN
// RUN: tessera-opt %root/graph_examples/mlp.mlir | tessera-opt | FileCheck %s --check-prefix=MLP
// RUN: tessera-opt %root/graph_examples/moe.mlir | tessera-opt | FileCheck %s --check-prefix=MOE

// MAMBA: nemotron.mamba2_mixer {{.*}} conv(%{{.*}} : tensor<96x4xf32>, %{{.*}} : tensor<96xf32>)
// ATTN: nemotron.attn_gqa {{.*}} num_kv_heads = 2 : i64
// MLP: nemotron.mlp_relu2 {{.*}} up(%{{.*}} : tensor<48x32xf32>)
// MOE: nemotron.moe {{.*}} n_group = 2 : i64, topk_group = 1 : i64
