// A hand-written row-wise RMSNorm (scf + memref, bare-pointer ABI) that test_toolchain.py lowers through
// the MLIR 22 toolchain to x86-64 machine code and runs against numpy.
// out[r, c] = x[r, c] / sqrt(mean_c(x[r, :]^2) + eps) * w[c], for rows x cols = %rows x 72
func.func @rmsnorm(%x: memref<?x72xf32>, %w: memref<72xf32>, %out: memref<?x72xf32>, %rows: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %cols = arith.constant 72 : index
  %zero = arith.constant 0.0 : f32
  %n = arith.constant 72.0 : f32
  %eps = arith.constant 1.0e-05 : f32
  scf.for %r = %c0 to %rows step %c1 {
    %sum = scf.for %c = %c0 to %cols step %c1 iter_args(%acc = %zero) -> (f32) {
      %v = memref.load %x[%r, %c] : memref<?x72xf32>
      %sq = arith.mulf %v, %v : f32
      %next = arith.addf %acc, %sq : f32
      scf.yield %next : f32
    }
    %mean = arith.divf %sum, %n : f32
    %shifted = arith.addf %mean, %eps : f32
    %scale = math.rsqrt %shifted : f32
    scf.for %c = %c0 to %cols step %c1 {
      %v = memref.load %x[%r, %c] : memref<?x72xf32>
      %g = memref.load %w[%c] : memref<72xf32>
      %t = arith.mulf %v, %scale : f32
      %o = arith.mulf %t, %g : f32
      memref.store %o, %out[%r, %c] : memref<?x72xf32>
    }
  }
  return
}
