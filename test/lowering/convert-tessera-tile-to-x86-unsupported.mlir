// RUN: not tessera-opt %s -t x86-mlir 2>&1 | FileCheck %s
// A kernel with no body (a kind kernels/ does not write): one line naming the kernel and the kind.

// CHECK: tessera-opt: error: tessera.tile.kernel @fft_k: kind 'fft' has no x86 lowering
tessera.tile.kernel @fft_k attributes {kind = "fft", dims = {}, parallel = "tokens", grid = 0 : i64, target = "x86", tiles = {}, footprint = 0 : i64} {
^bb0:
}
