// What lets one source serve the host compiler (CPU drivers) and nvcc (CUDA kernels): function
// qualifiers, loop pragmas, the written-out FMAs, and small arithmetic both sides use. Plain C++:
// no torch, no CUDA headers.
//
// The per-point math works on L "lanes" (points) at a time. The CUDA kernels use L = 1 (one point
// per thread); the CPU drivers use 64 float or 32 double lanes (common/cpu_tiles.h), so that
// every `for (l < L)` loop is a short, fixed-trip, branch-free loop that the compiler turns into
// SIMD instructions.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define CN_HD __host__ __device__ __forceinline__
#else
#define CN_HD inline
#endif

// Chunk loops are unrolled on the GPU so that the chunk's waves stay in registers. Lane loops
// (CN_LANES) have one or two iterations on the GPU (compnet/kernels.h: sweep_lane_points),
// which nvcc unrolls unasked (an explicit pragma there changed the register allocation of the
// one-point kernels for the worse); on the host they are marked as SIMD loops, since
// otherwise GCC fully unrolls these short loops first and then fails to vectorise them. (The host
// build also needs -fno-trapping-math, or GCC will not turn the selects into blends.)
// On the GPU the chunk loops run a fixed CHUNK iterations (guarded) so they can be unrolled; on
// the host they run only over the layers that exist.
#if defined(__CUDACC__)
#define CN_UNROLL _Pragma("unroll")
#define CN_LANES
#define CN_FIXED_CHUNK 1
#elif defined(_OPENMP)
#define CN_UNROLL
#define CN_LANES _Pragma("omp simd")
#else
#define CN_UNROLL
#define CN_LANES
#endif
#ifndef CN_FIXED_CHUNK
#define CN_FIXED_CHUNK 0
#endif

namespace cn {

// The build turns off the compiler's own FMA contraction (-ffp-contract=off, nvcc --fmad=false):
// whether it fuses a*b+c depends on the inlining context and the target, so two call sites of
// the same math could round differently. Every FMA is written out instead: fma_ in the triangle
// step, madd in the hot sums (an FMA where the target has one, else a multiply and an add).
#if defined(__CUDACC__) || defined(__FMA__)
#define CN_HAS_FMA 1
CN_HD float fma_(float a, float b, float c) { return fmaf(a, b, c); }
CN_HD double fma_(double a, double b, double c) { return fma(a, b, c); }
template <typename T>
CN_HD T madd(T a, T b, T c) { return fma_(a, b, c); }
#else
#define CN_HAS_FMA 0
template <typename T>
CN_HD T madd(T a, T b, T c) { return a * b + c; }
#endif

CN_HD float sqrt_(float v) { return sqrtf(v); }
CN_HD double sqrt_(double v) { return sqrt(v); }

// Blocks of `per` items that cover n items.
CN_HD int64_t ceil_div(int64_t n, int64_t per) { return (n + per - 1) / per; }

}  // namespace cn
