// The lockstep simulator's own probes (test_rocdl_kernels.py, the simulator's checks): GPU functions written by
// hand in MLIR 22's form, read by MLIR as the kernels Tessera compiles are. Each takes its global buffers, then
// the kernel ABI's tokens and position.
module attributes {gpu.container_module} {
gpu.module @kernels {

// Each thread stores its id: out[tid] = tid.
gpu.func @store_tid(%out: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 128, 1, 1>, rocdl.flat_work_group_size = "128,128"} {
  %tid = gpu.thread_id x
  %t = arith.index_cast %tid : index to i32
  %g = llvm.getelementptr %out[%t] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i32
  llvm.store %t, %g : i32, !llvm.ptr<1>
  gpu.return
}

// A barrier only the first 64 of 128 threads reach.
gpu.func @divergent_barrier(%out: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 128, 1, 1>, rocdl.flat_work_group_size = "128,128"} {
  %tid = gpu.thread_id x
  %c64 = arith.constant 64 : index
  %p = arith.cmpi ult, %tid, %c64 : index
  scf.if %p {
    gpu.barrier
  }
  gpu.return
}

// Two waves swap values through LDS: each thread writes its slot, a barrier, then it reads the
// slot of thread 127 - tid (the other wave's).
gpu.func @exchange(%out: !llvm.ptr<1>, %tokens: i32, %position: i32) workgroup(%lds_s : memref<128xi32, #gpu.address_space<workgroup>>) kernel attributes {known_block_size = array<i32: 128, 1, 1>, rocdl.flat_work_group_size = "128,128"} {
  %tid = gpu.thread_id x
  %t = arith.index_cast %tid : index to i32
  memref.store %t, %lds_s[%tid] : memref<128xi32, #gpu.address_space<workgroup>>
  gpu.barrier
  %c127 = arith.constant 127 : index
  %other = arith.subi %c127, %tid : index
  %w = memref.load %lds_s[%other] : memref<128xi32, #gpu.address_space<workgroup>>
  %g = llvm.getelementptr %out[%t] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i32
  llvm.store %w, %g : i32, !llvm.ptr<1>
  gpu.return
}

// The same exchange without its barrier: a race between the waves.
gpu.func @exchange_without_barrier(%out: !llvm.ptr<1>, %tokens: i32, %position: i32) workgroup(%lds_s : memref<128xi32, #gpu.address_space<workgroup>>) kernel attributes {known_block_size = array<i32: 128, 1, 1>, rocdl.flat_work_group_size = "128,128"} {
  %tid = gpu.thread_id x
  %t = arith.index_cast %tid : index to i32
  memref.store %t, %lds_s[%tid] : memref<128xi32, #gpu.address_space<workgroup>>

  %c127 = arith.constant 127 : index
  %other = arith.subi %c127, %tid : index
  %w = memref.load %lds_s[%other] : memref<128xi32, #gpu.address_space<workgroup>>
  %g = llvm.getelementptr %out[%t] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i32
  llvm.store %w, %g : i32, !llvm.ptr<1>
  gpu.return
}

// D = C + A B for one wave of 64 by rocdl.mfma.f32.16x16x16bf16.1k, written out by hand from the layout
// arch.WaveFragments documents: lane l = 16 q + c holds A[c][4 q + i] and B[4 q + i][c], and D[4 q + i][c].
gpu.func @mfma_bf16(%a: !llvm.ptr<1>, %b: !llvm.ptr<1>, %d: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 64, 1, 1>, rocdl.flat_work_group_size = "64,64"} {
  %lane = gpu.thread_id x
  %c16 = arith.constant 16 : index
  %c = arith.remui %lane, %c16 : index
  %q = arith.divui %lane, %c16 : index
  %ka0_s = arith.constant 4 : index
  %ka0_t = arith.muli %q, %ka0_s : index
  %ka0_i = arith.constant 0 : index
  %ka0 = arith.addi %ka0_t, %ka0_i : index
  %a_wa_c_ka0 = arith.constant 16 : index
  %a_ra_c_ka0 = arith.muli %c, %a_wa_c_ka0 : index
  %a_oa_c_ka0 = arith.addi %a_ra_c_ka0, %ka0 : index
  %a_ia_c_ka0 = arith.index_cast %a_oa_c_ka0 : index to i32
  %a_ga_c_ka0 = llvm.getelementptr %a[%a_ia_c_ka0] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %a_c_ka0 = llvm.load %a_ga_c_ka0 : !llvm.ptr<1> -> i16
  %ka1_s = arith.constant 4 : index
  %ka1_t = arith.muli %q, %ka1_s : index
  %ka1_i = arith.constant 1 : index
  %ka1 = arith.addi %ka1_t, %ka1_i : index
  %a_wa_c_ka1 = arith.constant 16 : index
  %a_ra_c_ka1 = arith.muli %c, %a_wa_c_ka1 : index
  %a_oa_c_ka1 = arith.addi %a_ra_c_ka1, %ka1 : index
  %a_ia_c_ka1 = arith.index_cast %a_oa_c_ka1 : index to i32
  %a_ga_c_ka1 = llvm.getelementptr %a[%a_ia_c_ka1] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %a_c_ka1 = llvm.load %a_ga_c_ka1 : !llvm.ptr<1> -> i16
  %ka2_s = arith.constant 4 : index
  %ka2_t = arith.muli %q, %ka2_s : index
  %ka2_i = arith.constant 2 : index
  %ka2 = arith.addi %ka2_t, %ka2_i : index
  %a_wa_c_ka2 = arith.constant 16 : index
  %a_ra_c_ka2 = arith.muli %c, %a_wa_c_ka2 : index
  %a_oa_c_ka2 = arith.addi %a_ra_c_ka2, %ka2 : index
  %a_ia_c_ka2 = arith.index_cast %a_oa_c_ka2 : index to i32
  %a_ga_c_ka2 = llvm.getelementptr %a[%a_ia_c_ka2] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %a_c_ka2 = llvm.load %a_ga_c_ka2 : !llvm.ptr<1> -> i16
  %ka3_s = arith.constant 4 : index
  %ka3_t = arith.muli %q, %ka3_s : index
  %ka3_i = arith.constant 3 : index
  %ka3 = arith.addi %ka3_t, %ka3_i : index
  %a_wa_c_ka3 = arith.constant 16 : index
  %a_ra_c_ka3 = arith.muli %c, %a_wa_c_ka3 : index
  %a_oa_c_ka3 = arith.addi %a_ra_c_ka3, %ka3 : index
  %a_ia_c_ka3 = arith.index_cast %a_oa_c_ka3 : index to i32
  %a_ga_c_ka3 = llvm.getelementptr %a[%a_ia_c_ka3] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %a_c_ka3 = llvm.load %a_ga_c_ka3 : !llvm.ptr<1> -> i16
  %frag_a = vector.from_elements %a_c_ka0, %a_c_ka1, %a_c_ka2, %a_c_ka3 : vector<4xi16>
  %kb0_s = arith.constant 4 : index
  %kb0_t = arith.muli %q, %kb0_s : index
  %kb0_i = arith.constant 0 : index
  %kb0 = arith.addi %kb0_t, %kb0_i : index
  %b_wb_kb0_c = arith.constant 16 : index
  %b_rb_kb0_c = arith.muli %kb0, %b_wb_kb0_c : index
  %b_ob_kb0_c = arith.addi %b_rb_kb0_c, %c : index
  %b_ib_kb0_c = arith.index_cast %b_ob_kb0_c : index to i32
  %b_gb_kb0_c = llvm.getelementptr %b[%b_ib_kb0_c] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %b_kb0_c = llvm.load %b_gb_kb0_c : !llvm.ptr<1> -> i16
  %kb1_s = arith.constant 4 : index
  %kb1_t = arith.muli %q, %kb1_s : index
  %kb1_i = arith.constant 1 : index
  %kb1 = arith.addi %kb1_t, %kb1_i : index
  %b_wb_kb1_c = arith.constant 16 : index
  %b_rb_kb1_c = arith.muli %kb1, %b_wb_kb1_c : index
  %b_ob_kb1_c = arith.addi %b_rb_kb1_c, %c : index
  %b_ib_kb1_c = arith.index_cast %b_ob_kb1_c : index to i32
  %b_gb_kb1_c = llvm.getelementptr %b[%b_ib_kb1_c] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %b_kb1_c = llvm.load %b_gb_kb1_c : !llvm.ptr<1> -> i16
  %kb2_s = arith.constant 4 : index
  %kb2_t = arith.muli %q, %kb2_s : index
  %kb2_i = arith.constant 2 : index
  %kb2 = arith.addi %kb2_t, %kb2_i : index
  %b_wb_kb2_c = arith.constant 16 : index
  %b_rb_kb2_c = arith.muli %kb2, %b_wb_kb2_c : index
  %b_ob_kb2_c = arith.addi %b_rb_kb2_c, %c : index
  %b_ib_kb2_c = arith.index_cast %b_ob_kb2_c : index to i32
  %b_gb_kb2_c = llvm.getelementptr %b[%b_ib_kb2_c] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %b_kb2_c = llvm.load %b_gb_kb2_c : !llvm.ptr<1> -> i16
  %kb3_s = arith.constant 4 : index
  %kb3_t = arith.muli %q, %kb3_s : index
  %kb3_i = arith.constant 3 : index
  %kb3 = arith.addi %kb3_t, %kb3_i : index
  %b_wb_kb3_c = arith.constant 16 : index
  %b_rb_kb3_c = arith.muli %kb3, %b_wb_kb3_c : index
  %b_ob_kb3_c = arith.addi %b_rb_kb3_c, %c : index
  %b_ib_kb3_c = arith.index_cast %b_ob_kb3_c : index to i32
  %b_gb_kb3_c = llvm.getelementptr %b[%b_ib_kb3_c] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, i16
  %b_kb3_c = llvm.load %b_gb_kb3_c : !llvm.ptr<1> -> i16
  %frag_b = vector.from_elements %b_kb0_c, %b_kb1_c, %b_kb2_c, %b_kb3_c : vector<4xi16>
  %zero = arith.constant 0 : i32
  %c0 = arith.constant dense<0.0> : vector<4xf32>
  %acc = rocdl.mfma.f32.16x16x16bf16.1k %frag_a, %frag_b, %c0, %zero, %zero, %zero : (vector<4xi16>, vector<4xi16>, vector<4xf32>, i32, i32, i32) -> vector<4xf32>
  %c4 = arith.constant 4 : index
  %r0 = arith.muli %q, %c4 : index
  %e0 = vector.extract %acc[0] : f32 from vector<4xf32>
  %ri0 = arith.constant 0 : index
  %row0 = arith.addi %r0, %ri0 : index
  %d_r0 = arith.muli %row0, %c16 : index
  %d_o0 = arith.addi %d_r0, %c : index
  %d_i0 = arith.index_cast %d_o0 : index to i32
  %d_g0 = llvm.getelementptr %d[%d_i0] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e0, %d_g0 : f32, !llvm.ptr<1>
  %e1 = vector.extract %acc[1] : f32 from vector<4xf32>
  %ri1 = arith.constant 1 : index
  %row1 = arith.addi %r0, %ri1 : index
  %d_r1 = arith.muli %row1, %c16 : index
  %d_o1 = arith.addi %d_r1, %c : index
  %d_i1 = arith.index_cast %d_o1 : index to i32
  %d_g1 = llvm.getelementptr %d[%d_i1] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e1, %d_g1 : f32, !llvm.ptr<1>
  %e2 = vector.extract %acc[2] : f32 from vector<4xf32>
  %ri2 = arith.constant 2 : index
  %row2 = arith.addi %r0, %ri2 : index
  %d_r2 = arith.muli %row2, %c16 : index
  %d_o2 = arith.addi %d_r2, %c : index
  %d_i2 = arith.index_cast %d_o2 : index to i32
  %d_g2 = llvm.getelementptr %d[%d_i2] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e2, %d_g2 : f32, !llvm.ptr<1>
  %e3 = vector.extract %acc[3] : f32 from vector<4xf32>
  %ri3 = arith.constant 3 : index
  %row3 = arith.addi %r0, %ri3 : index
  %d_r3 = arith.muli %row3, %c16 : index
  %d_o3 = arith.addi %d_r3, %c : index
  %d_i3 = arith.index_cast %d_o3 : index to i32
  %d_g3 = llvm.getelementptr %d[%d_i3] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e3, %d_g3 : f32, !llvm.ptr<1>
  gpu.return
}

// The same by rocdl.mfma.f32.16x16x4f32: lane l = 16 q + c holds A[c][q], B[q][c], and D[4 q + i][c].
gpu.func @mfma_f32(%a: !llvm.ptr<1>, %b: !llvm.ptr<1>, %d: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 64, 1, 1>, rocdl.flat_work_group_size = "64,64"} {
  %lane = gpu.thread_id x
  %c16 = arith.constant 16 : index
  %c = arith.remui %lane, %c16 : index
  %q = arith.divui %lane, %c16 : index
  %ka0_s = arith.constant 1 : index
  %ka0_t = arith.muli %q, %ka0_s : index
  %ka0_i = arith.constant 0 : index
  %ka0 = arith.addi %ka0_t, %ka0_i : index
  %a_wa_c_ka0 = arith.constant 4 : index
  %a_ra_c_ka0 = arith.muli %c, %a_wa_c_ka0 : index
  %a_oa_c_ka0 = arith.addi %a_ra_c_ka0, %ka0 : index
  %a_ia_c_ka0 = arith.index_cast %a_oa_c_ka0 : index to i32
  %a_ga_c_ka0 = llvm.getelementptr %a[%a_ia_c_ka0] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  %a_c_ka0 = llvm.load %a_ga_c_ka0 : !llvm.ptr<1> -> f32
  %kb0_s = arith.constant 1 : index
  %kb0_t = arith.muli %q, %kb0_s : index
  %kb0_i = arith.constant 0 : index
  %kb0 = arith.addi %kb0_t, %kb0_i : index
  %b_wb_kb0_c = arith.constant 16 : index
  %b_rb_kb0_c = arith.muli %kb0, %b_wb_kb0_c : index
  %b_ob_kb0_c = arith.addi %b_rb_kb0_c, %c : index
  %b_ib_kb0_c = arith.index_cast %b_ob_kb0_c : index to i32
  %b_gb_kb0_c = llvm.getelementptr %b[%b_ib_kb0_c] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  %b_kb0_c = llvm.load %b_gb_kb0_c : !llvm.ptr<1> -> f32
  %zero = arith.constant 0 : i32
  %c0 = arith.constant dense<0.0> : vector<4xf32>
  %acc = rocdl.mfma.f32.16x16x4f32 %a_c_ka0, %b_kb0_c, %c0, %zero, %zero, %zero : (f32, f32, vector<4xf32>, i32, i32, i32) -> vector<4xf32>
  %c4 = arith.constant 4 : index
  %r0 = arith.muli %q, %c4 : index
  %e0 = vector.extract %acc[0] : f32 from vector<4xf32>
  %ri0 = arith.constant 0 : index
  %row0 = arith.addi %r0, %ri0 : index
  %d_r0 = arith.muli %row0, %c16 : index
  %d_o0 = arith.addi %d_r0, %c : index
  %d_i0 = arith.index_cast %d_o0 : index to i32
  %d_g0 = llvm.getelementptr %d[%d_i0] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e0, %d_g0 : f32, !llvm.ptr<1>
  %e1 = vector.extract %acc[1] : f32 from vector<4xf32>
  %ri1 = arith.constant 1 : index
  %row1 = arith.addi %r0, %ri1 : index
  %d_r1 = arith.muli %row1, %c16 : index
  %d_o1 = arith.addi %d_r1, %c : index
  %d_i1 = arith.index_cast %d_o1 : index to i32
  %d_g1 = llvm.getelementptr %d[%d_i1] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e1, %d_g1 : f32, !llvm.ptr<1>
  %e2 = vector.extract %acc[2] : f32 from vector<4xf32>
  %ri2 = arith.constant 2 : index
  %row2 = arith.addi %r0, %ri2 : index
  %d_r2 = arith.muli %row2, %c16 : index
  %d_o2 = arith.addi %d_r2, %c : index
  %d_i2 = arith.index_cast %d_o2 : index to i32
  %d_g2 = llvm.getelementptr %d[%d_i2] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e2, %d_g2 : f32, !llvm.ptr<1>
  %e3 = vector.extract %acc[3] : f32 from vector<4xf32>
  %ri3 = arith.constant 3 : index
  %row3 = arith.addi %r0, %ri3 : index
  %d_r3 = arith.muli %row3, %c16 : index
  %d_o3 = arith.addi %d_r3, %c : index
  %d_i3 = arith.index_cast %d_o3 : index to i32
  %d_g3 = llvm.getelementptr %d[%d_i3] : (!llvm.ptr<1>, i32) -> !llvm.ptr<1>, f32
  llvm.store %e3, %d_g3 : f32, !llvm.ptr<1>
  gpu.return
}

// An op the simulator does not model (its error names it).
gpu.func @unknown_op(%out: !llvm.ptr<1>, %tokens: i32, %position: i32) kernel attributes {known_block_size = array<i32: 128, 1, 1>, rocdl.flat_work_group_size = "128,128"} {
  %c = arith.constant 1 : i32
  %d = arith.floordivsi %c, %c : i32
  gpu.return
}
}
}
