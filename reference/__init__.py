"""The reference executor: a numpy interpreter of Graph-IR, Tessera's executable specification.

It belongs with the compiler (it reads xDSL modules), not with runtime/. Kernels compute in float64
and carry decode state (conv_state, ssm_state, KV cache) in float32, as compiled targets do.
"""
