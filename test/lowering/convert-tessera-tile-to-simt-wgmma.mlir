// convert-tessera-tile-to-simt{arch=sm_90a}: the WGMMA + TMA pattern (lowering/nvvm/wgmma.py). A K loop pipelined
// 3 deep (tessera.tile.stages) whose mma operands are async, 128-byte-swizzled loads into shared memory becomes:
// the launch operands only async loads read passed as CUtensorMaps (grid constants); the first thread
// initialising a full and an empty mbarrier per stage; the last warpgroup's first thread streaming both boxes of
// each k-block into its stage (wait for the stage's release, expect its bytes, two bulk tensor copies), having
// handed its registers to the consumers (setmaxnreg); the two consumer warpgroups waiting for each stage,
// issuing 4 K-steps of one m64n128k16 WGMMA (k-block 0 peeled with scale-d zero), committing, waiting until
// only that group is pending and releasing the previous k-block's stage; after the loop, waiting for every
// group and releasing the last stage. The epilogue runs in the consumers only: each
// thread reads the bias of its own columns straight from memory (no shared staging, no barrier) and updates y
// element by element (read, add, write under one guard).
// RUN: tessera-opt %s -p 'convert-tessera-tile-to-simt{arch=sm_90a}' | FileCheck %s

// CHECK:      llvm.mlir.global external @tessera_dynamic_smem() {addr_space = 3 : i32, alignment = 1024 : i64} : !llvm.array<0 x i8>
// CHECK:      ^bb0(%x: !llvm.ptr, %w: !llvm.ptr, %bias: !llvm.ptr<1>, %y: !llvm.ptr<1>, %tokens: i32, %position: i32):
// CHECK:      llvm.mlir.addressof @tessera_dynamic_smem : !llvm.ptr<3>
// CHECK-COUNT-6: "nvvm.mbarrier.init"
// CHECK:      "nvvm.fence.mbarrier.init"()
// CHECK:      "gpu.barrier"()
// CHECK:      "nvvm.setmaxregister"() <{action = #nvvm<action decrease>, regCount = 40 : i32}>
// CHECK:      scf.for
// CHECK:        "nvvm.mbarrier.try_wait.parity"
// CHECK:        "nvvm.mbarrier.arrive.expect_tx"(%{{.*}}, %{{.*}}) <{relaxed = false, scope = #nvvm.mem_scope<cta>}>
// CHECK:        "nvvm.cp.async.bulk.tensor.shared.cluster.global"(%{{.*}}, %x,
// CHECK:        "nvvm.cp.async.bulk.tensor.shared.cluster.global"(%{{.*}}, %w,
// CHECK:      } else {
// CHECK:        "nvvm.setmaxregister"() <{action = #nvvm<action increase>, regCount = 232 : i32}>
// CHECK:        "nvvm.mbarrier.try_wait.parity"
// CHECK:        "nvvm.wgmma.fence.aligned"()
// CHECK:        shape = #nvvm.shape<m = 64, n = 128, k = 16>, {{.*}} scaleD = #nvvm.wgmma_scale_out<zero>
// CHECK-COUNT-3: scaleD = #nvvm.wgmma_scale_out<one>
// CHECK:        "nvvm.wgmma.commit.group.sync.aligned"()
// CHECK:        "nvvm.wgmma.wait.group.sync.aligned"() <{group = 1 : i64}>
// CHECK-NOT:    "nvvm.mbarrier.arrive"
// CHECK:        scf.for
// CHECK-COUNT-4: "nvvm.wgmma.mma_async"
// CHECK:          "nvvm.wgmma.wait.group.sync.aligned"() <{group = 1 : i64}>
// CHECK:          "nvvm.mbarrier.arrive"
// CHECK:        "nvvm.wgmma.wait.group.sync.aligned"() <{group = 0 : i64}>
// CHECK:        "nvvm.mbarrier.arrive"
// CHECK:        llvm.getelementptr %bias
// CHECK-NOT:    gpu.barrier
// CHECK:        scf.if
// CHECK-NEXT:     llvm.getelementptr %y
// CHECK-NEXT:     llvm.load
// CHECK-NEXT:     arith.addf
// CHECK-NEXT:     llvm.getelementptr %y
// CHECK-NEXT:     llvm.store
// CHECK:      known_block_size = array<i32: 384, 1, 1>, tessera.grid_constants = array<i32: 0, 1>
// CHECK-NOT:  tessera.tile.

builtin.module {
  tessera.tile.kernel @gemm attributes {kind = "gemm_test", dims = {}, parallel = "column_blocks", grid = 1 : i64, target = "sm_90a", tiles = {threads = 384 : i64}, token_block = 128 : i64} {
  ^bb0(%x: memref<?x128xbf16>, %w: memref<128x128xbf16>, %bias: memref<128xf32>, %y: memref<?x128xf32>, %col_block: index, %row_block: index):
    %c0 = arith.constant 0 : index
    %c64 = arith.constant 64 : index
    %c128 = arith.constant 128 : index
    %zero = arith.constant 0.0 : f32
    %tokens = memref.dim %x, %c0 : memref<?x128xbf16>
    %row = arith.muli %row_block, %c128 : index
    %col = arith.muli %col_block, %c128 : index
    %init = tessera.tile.splat %zero : f32 -> !tessera.tile.tile<128x128xf32>
    %acc = scf.for %k = %c0 to %c128 step %c64 iter_args(%sum = %init) -> (!tessera.tile.tile<128x128xf32>) {
      %a = tessera.tile.load %x[%row, %k] bound %tokens {bound_axes = array<i64: 0>, space = "shared", async, swizzle = 128 : i64} : memref<?x128xbf16> -> !tessera.tile.tile<128x64xbf16>
      %b = tessera.tile.load %w[%col, %k] {space = "shared", async, swizzle = 128 : i64} : memref<128x128xbf16> -> !tessera.tile.tile<128x64xbf16>
      %next = tessera.tile.mma %a, %b, %sum {rhs_transposed} : !tessera.tile.tile<128x64xbf16>, !tessera.tile.tile<128x64xbf16>, !tessera.tile.tile<128x128xf32> -> !tessera.tile.tile<128x128xf32>
      scf.yield %next : !tessera.tile.tile<128x128xf32>
    } {tessera.tile.stages = 3 : i64}
    %bias_row = tessera.tile.load %bias[%col] : memref<128xf32> -> !tessera.tile.tile<128xf32>
    %biases = tessera.tile.broadcast %bias_row {axis = 0 : i64} : !tessera.tile.tile<128xf32> -> !tessera.tile.tile<128x128xf32>
    %biased = tessera.tile.map %acc, %biases : !tessera.tile.tile<128x128xf32>, !tessera.tile.tile<128x128xf32> -> !tessera.tile.tile<128x128xf32> {
    ^bb0(%v: f32, %u: f32):
      %s = arith.addf %v, %u : f32
      tessera.tile.yield %s : f32
    }
    %old = tessera.tile.load %y[%row, %col] bound %tokens {bound_axes = array<i64: 0>} : memref<?x128xf32> -> !tessera.tile.tile<128x128xf32>
    %new = tessera.tile.map %biased, %old : !tessera.tile.tile<128x128xf32>, !tessera.tile.tile<128x128xf32> -> !tessera.tile.tile<128x128xf32> {
    ^bb0(%v: f32, %u: f32):
      %s = arith.addf %v, %u : f32
      tessera.tile.yield %s : f32
    }
    tessera.tile.store %new, %y[%row, %col] bound %tokens {bound_axes = array<i64: 0>} : !tessera.tile.tile<128x128xf32>, memref<?x128xf32>
  }
}
