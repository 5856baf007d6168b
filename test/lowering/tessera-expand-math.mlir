// tessera-expand-math{target} on math ops of f32 (the first case: what an sm_90a lane holds) and of
// vector<16xf32> and f64 (the second: x86 vectors and libm's scalars). sm_90a writes exp, log, sqrt and rsqrt
// out with the PTX's correctly rounded sqrt and ex2.approx; x86 writes exp (Cephes) and log (fdlibm) out on
// scalars and vectors, leaves sqrt / rsqrt to its instructions and f64 to libm; gfx942 expands nothing. The
// first sm_90a run takes the first case alone (sed stops at the separator); the second the vectors of the
// second, which sm_90a expands element by element (a GPU lane's several elements of a tile); f64 it has no
// library for: an error.
// RUN: sed '/^\/\/ -----/q' %s | tessera-opt -p 'tessera-expand-math{target=sm_90a}' | FileCheck %s --check-prefix=SM90A
// RUN: sed -n '/^\/\/ -----/,/exp_f64/p' %s | sed '$d' | tessera-opt -p 'tessera-expand-math{target=sm_90a}' | FileCheck %s --check-prefix=SM90A-V16
// RUN: not tessera-opt %s --split-input-file -p 'tessera-expand-math{target=sm_90a}' 2>&1 | FileCheck %s --check-prefix=SM90A-F64
// RUN: tessera-opt %s --split-input-file -p 'tessera-expand-math{target=x86}' | FileCheck %s --check-prefix=X86
// RUN: tessera-opt %s --split-input-file -p 'tessera-expand-math{target=gfx942}' | FileCheck %s --check-prefix=GFX942

// SM90A-F64: tessera-opt: error: math.exp: sm_90a kernels compute it on f32 or vectors of f32, got f64

// SM90A-V16-LABEL: func.func @exp_v16
// SM90A-V16:         vector.extract %x[0] : f32 from vector<16xf32>
// SM90A-V16:         llvm.call_intrinsic "llvm.exp2.f32"
// SM90A-V16:         vector.extract %x[15] : f32 from vector<16xf32>
// SM90A-V16:         %y = "vector.from_elements"(%{{.*}}) : ({{(f32, ){15}f32}}) -> vector<16xf32>
// SM90A-V16-LABEL: func.func @log_v16
// SM90A-V16-NOT:     math.

// SM90A-LABEL: func.func @exp_f32
// SM90A-NOT:     math.
// SM90A:         %[[CLAMPED:.*]] = arith.maximumf %x, %{{.*}} : f32
// SM90A:         arith.minimumf %[[CLAMPED]]
// SM90A:         %[[FRACTION:.*]] = llvm.call_intrinsic "llvm.exp2.f32"(%{{.*}}) : (f32) -> f32
// SM90A:         %[[BITS:.*]] = arith.shli %{{.*}}, %{{.*}} : i32
// SM90A-NEXT:    %[[SCALE:.*]] = arith.bitcast %[[BITS]] : i32 to f32
// SM90A-NEXT:    arith.mulf %[[FRACTION]], %[[SCALE]] : f32
// SM90A:         arith.cmpf olt, %x
// SM90A:         arith.cmpf ogt, %x
// SM90A:         %y = arith.select
// SM90A-NEXT:    func.return %y : f32
// SM90A-LABEL: func.func @log_f32
// SM90A-NOT:     math.
// SM90A:         arith.shrui %{{.*}} : i32
// SM90A:         arith.divf %{{.*}} : f32
// SM90A:         %y = arith.select
// SM90A-LABEL: func.func @sqrt_f32
// SM90A-NEXT:    %y = llvm.call_intrinsic "llvm.sqrt.f32"(%x) : (f32) -> f32
// SM90A-LABEL: func.func @rsqrt_f32
// SM90A:         %[[ROOT:.*]] = llvm.call_intrinsic "llvm.sqrt.f32"(%x) : (f32) -> f32
// SM90A-NEXT:    %y = arith.divf %{{.*}}, %[[ROOT]] : f32
// SM90A-NOT:   math.

// X86-LABEL: func.func @exp_f32
// X86-NOT:     math.
// X86:         %[[ABOVE:.*]] = arith.cmpf ugt, %x, %{{.*}} : f32
// X86:         arith.mulf {{.*}} fastmath<contract> : f32
// X86:         arith.select %[[ABOVE]]
// X86:         %y = arith.select
// X86-LABEL: func.func @log_f32
// X86-NOT:     math.
// X86:         arith.divf
// X86-LABEL: func.func @sqrt_f32
// X86-NEXT:    math.sqrt %x : f32
// X86-LABEL: func.func @rsqrt_f32
// X86-NEXT:    math.rsqrt %x : f32
// X86-LABEL: func.func @exp_v16
// X86-NOT:     math.
// X86:         %[[ABOVE:.*]] = arith.cmpf ugt, %x, %{{.*}} : vector<16xf32>
// X86-NEXT:    arith.select %[[ABOVE]], %x, %{{.*}} : vector<16xi1>, vector<16xf32>
// X86-COUNT-16: fastmath<contract> : vector<16xf32>
// X86:         arith.shli {{.*}} : vector<16xi32>
// X86:         arith.select %[[ABOVE]], {{.*}} : vector<16xi1>, vector<16xf32>
// X86:         arith.cmpf ogt, %x, {{.*}} : vector<16xf32>
// X86-NEXT:    arith.constant dense<0x7f800000> : vector<16xf32>
// X86-NEXT:    %y = arith.select {{.*}} : vector<16xi1>, vector<16xf32>
// X86-LABEL: func.func @log_v16
// X86-NOT:     math.
// X86:         arith.divf {{.*}} : vector<16xf32>
// X86:         %y = arith.select {{.*}} : vector<16xi1>, vector<16xf32>
// X86-LABEL: func.func @exp_f64
// X86-NEXT:    math.exp %x : f64

// GFX942-LABEL: func.func @exp_f32
// GFX942-NEXT:    math.exp %x : f32
// GFX942-LABEL: func.func @log_f32
// GFX942-NEXT:    math.log %x : f32
// GFX942-LABEL: func.func @sqrt_f32
// GFX942-NEXT:    math.sqrt %x : f32
// GFX942-LABEL: func.func @rsqrt_f32
// GFX942-NEXT:    math.rsqrt %x : f32
// GFX942-LABEL: func.func @exp_v16
// GFX942-NEXT:    math.exp %x : vector<16xf32>

func.func @exp_f32(%x: f32) -> f32 {
  %y = math.exp %x : f32
  func.return %y : f32
}
func.func @log_f32(%x: f32) -> f32 {
  %y = math.log %x : f32
  func.return %y : f32
}
func.func @sqrt_f32(%x: f32) -> f32 {
  %y = math.sqrt %x : f32
  func.return %y : f32
}
func.func @rsqrt_f32(%x: f32) -> f32 {
  %y = math.rsqrt %x : f32
  func.return %y : f32
}

// -----

func.func @exp_v16(%x: vector<16xf32>) -> vector<16xf32> {
  %y = math.exp %x : vector<16xf32>
  func.return %y : vector<16xf32>
}
func.func @log_v16(%x: vector<16xf32>) -> vector<16xf32> {
  %y = math.log %x : vector<16xf32>
  func.return %y : vector<16xf32>
}
func.func @exp_f64(%x: f64) -> f64 {
  %y = math.exp %x : f64
  func.return %y : f64
}
