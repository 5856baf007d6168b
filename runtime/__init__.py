"""Runtime: loads compiled artifacts and runs them. Light on purpose: numpy, safetensors and a driver
binding only — no xDSL, no MLIR bindings — so compiled models run on machines without the compiler."""
