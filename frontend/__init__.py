"""Frontend: model.yaml / HF config.json / Hub ids -> ModelSpec (model/) -> tessera.graph; HF checkpoints <-> Tessera weight directories."""
