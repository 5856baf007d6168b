"""Frontend: model.yaml / HF config.json / checkpoints -> ModelSpec -> tessera.graph."""
