// RUN: tessera-opt %root/graph_examples/hybrid.mlir -p 'convert-tessera-graph-to-schedule{max-seq-len=32},tessera-schedule-plan-buffers,convert-tessera-schedule-to-tile,tessera-tile-choose-tiles{target=x86},tessera-tile-compute-footprint' -o %t.tile.mlir
// RUN: tessera-opt %t.tile.mlir -t x86-native-mlir | FileCheck %s
// RUN: tessera-opt %t.tile.mlir -t x86-native-mlir | %python -c "from tessera.lowering.x86.native_program import to_llvm_ir; import sys; sys.stdout.write(to_llvm_ir(sys.stdin.read()))" | FileCheck %s --check-prefix=LLVM

// The launch lists as native programs (lowering/x86/native_program.py): each program one function that loops
// over its launch table (per launch: grid, align, fixed bytes, bytes per token) and a table of launch entries
// and argument words. A launch takes n = min(threads, units, max(bytes / 65536, 1)) threads: one is a plain
// call, more an OpenMP team whose thread t runs units [t u / n, (t + 1) u / n). Every thread runs kernels with
// MXCSR flushing denormals (FTZ | DAZ: 0x8040 = 32832), the caller's restored.
// CHECK:       memref.global "public" constant @tessera_program_sha256 : memref<64xi8> = dense<[{{[0-9, ]+}}]>
// CHECK:       memref.global "private" constant @tessera_prefill_launch_costs : memref<[[COSTS:[0-9]+]]xi64> = dense<"0x{{[0-9A-F]+}}">
// CHECK-LABEL: func.func @tessera_prefill(%launches: !llvm.ptr, %tokens: i64, %threads: i64)
// CHECK:         llvm.call_intrinsic "llvm.x86.sse.stmxcsr"(%[[CALLER:.*]]) : (!llvm.ptr) -> ()
// CHECK:         llvm.mlir.constant(32832 : i32)
// CHECK:         llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"
// CHECK:         memref.get_global @tessera_prefill_launch_costs : memref<[[COSTS]]xi64>
// CHECK:         scf.for %[[LAUNCH:.*]] = %{{.*}} to %{{.*}} step %{{.*}} : i64 {
// CHECK:           %[[ENTRY:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK:           %[[WORDS:.*]] = llvm.load %{{.*}} : !llvm.ptr -> !llvm.ptr
// CHECK:           %[[EXTENT:.*]] = llvm.select %{{.*}}, %tokens, %{{.*}} : i1, i64
// CHECK:           llvm.mlir.constant(65536 : i64)
// CHECK:           scf.if %{{.*}} {
// CHECK:             omp.parallel num_threads(%{{.*}} : i32) {
// CHECK-NEXT:          omp.wsloop {
// CHECK-NEXT:            omp.loop_nest (%[[PART:.*]]) : i64 = (%{{.*}}) to (%{{.*}}) step (%{{.*}}) {
// CHECK:                   llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"
// CHECK-NEXT:              llvm.call %[[ENTRY]](%[[WORDS]], %{{.*}}, %{{.*}}) : !llvm.ptr, (!llvm.ptr, i64, i64) -> ()
// CHECK-NEXT:              llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"
// CHECK-NEXT:              omp.yield
// CHECK:           } else {
// CHECK:             llvm.call %[[ENTRY]](%[[WORDS]], %{{.*}}, %[[EXTENT]]) : !llvm.ptr, (!llvm.ptr, i64, i64) -> ()
// CHECK:         llvm.call_intrinsic "llvm.x86.sse.ldmxcsr"(%[[CALLER]]) : (!llvm.ptr) -> ()
// CHECK-NEXT:    return
// CHECK-LABEL: func.func @tessera_prefill__profile(%launches: !llvm.ptr, %tokens: i64, %threads: i64, %ticks: !llvm.ptr)
// CHECK:         llvm.call_intrinsic "llvm.readcyclecounter"() : () -> i64
// CHECK:       memref.global "private" constant @tessera_decode_launch_costs
// CHECK-LABEL: func.func @tessera_decode(%launches: !llvm.ptr, %tokens: i64, %threads: i64)
// CHECK-LABEL: func.func @tessera_decode__profile(

// LLVM: define void @tessera_prefill(ptr %0, i64 %1, i64 %2)
// LLVM:   call void {{.*}}@__kmpc_fork_call(
// LLVM: define internal void @tessera_prefill..omp_par
// LLVM:   call void @__kmpc_for_static_init_8u(
