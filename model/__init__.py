"""What a model is, below every level: its config (config.py: ModelConfig, CompileOptions, ModelSpec), its
tensors (weights_layout.py), the sizes that follow from them (sizes.py), the safetensors format
(safetensors_io.py) and Tessera's weight directories, read (checkpoint.py). The frontend (HF loading,
conversion, Graph-IR), the targets and the runtime all build on it; it imports none of them."""
