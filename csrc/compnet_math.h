// The compositional network's per-point math (MATH.md sections 1-4), written once.
//
// Everything here is plain C++ compiled both by the host compiler (CPU driver) and by nvcc
// (CUDA kernels). It must not include torch or CUDA headers.
//
// The sweeps work on L "lanes" (points) at a time. The CUDA kernels use L = 1 (one point per
// thread); the CPU driver uses L = 8 or 16 so that every `for (l < L)` loop below is a short,
// fixed-trip, branch-free loop that the compiler turns into SIMD instructions.
#pragma once

#if defined(__CUDACC__)
#define CN_HD __host__ __device__ __forceinline__
#else
#define CN_HD inline
#endif

#if defined(__CUDACC__)
#define CN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__clang__)
#define CN_UNROLL _Pragma("GCC unroll 64")
#else
#define CN_UNROLL
#endif

namespace cn {

// One triangle layer; the reciprocals are computed once per layer, not per point.
template <typename T>
struct Tri {
  T a, b, ia, ib;  // peak, 1 - a, 1/a, 1/(1-a)
  CN_HD explicit Tri(T peak) : a(peak), b(T(1) - peak), ia(T(1) / peak), ib(T(1) / b) {}
  // T_a(u), as one correctly rounded division: the waves are exponentially sensitive to
  // rounding (slopes 1/a, 1/(1-a) > 1 compound over the layers), so the value is computed
  // exactly as the reference computes it and the two agree bitwise. Ties (u == a) take the
  // left branch; du/da use the same convention (the gradient of the branch the value came from).
  CN_HD T value(T u) const {
    const bool left = u <= a;
    return (left ? u : T(1) - u) / (left ? a : b);
  }
  CN_HD T du(T u) const { return u <= a ? ia : -ib; }
  CN_HD T da(T u) const { return u <= a ? -u * ia * ia : (T(1) - u) * ib * ib; }
};

// ---- smooth scales (MATH.md section 3): per seed, O(D) -------------------------------------

template <typename T>
CN_HD T smooth_s0(const T* a, int sign) {
  return (sign < 0 ? a[0] : T(1) - a[0]) * a[1];
}

// s_{i+1} = s_i * ((1 - a_{i+1}) * a_{i+2}); `a` has D + 1 entries.
template <typename T>
CN_HD T smooth_next(T s, const T* a, int i) {
  return s * ((T(1) - a[i + 1]) * a[i + 2]);
}

template <typename T>
CN_HD void smooth_scales_row(const T* a, int D, int sign, T* s) {
  T v = smooth_s0(a, sign);
  for (int i = 0; i < D; ++i) {
    s[i] = v;
    if (i + 1 < D) v = smooth_next(v, a, i);
  }
}

// Chain rule of the recurrence: given gs = dL/ds (D entries, overwritten as scratch), add the
// peaks' share to ga (D + 1 entries). Underflowed scales give zeros, never NaN.
template <typename T>
CN_HD void smooth_scales_backward_row(const T* a, const T* s, int D, int sign, T* gs, T* ga) {
  for (int i = D - 1; i >= 1; --i) {
    const T g = gs[i], prev = s[i - 1];
    const T one_m = T(1) - a[i], next = a[i + 1];
    ga[i] -= g * prev * next;
    ga[i + 1] += g * prev * one_m;
    gs[i - 1] += g * (one_m * next);
  }
  const T g0 = gs[0];
  ga[0] += sign < 0 ? g0 * a[1] : -g0 * a[1];
  ga[1] += g0 * (sign < 0 ? a[0] : T(1) - a[0]);
}

// ---- forward sweep (MATH.md section 2) -----------------------------------------------------

// y = x + sign * sum_i s_i W_i(x) for L points of one seed. `s` is the scales row (free mode) or
// nullptr, in which case the smooth scales are generated on the fly from the peaks.
template <typename T, int L>
CN_HD void forward_lanes(const T (&x)[L], const T* a, const T* s, int D, int sign, T (&y)[L]) {
  T u[L];
  CN_UNROLL for (int l = 0; l < L; ++l) { u[l] = x[l]; y[l] = x[l]; }
  T sm = s ? T(0) : smooth_s0(a, sign);
  for (int i = 0; i < D; ++i) {
    const Tri<T> t(a[i]);
    const T ss = T(sign) * (s ? s[i] : sm);
    CN_UNROLL for (int l = 0; l < L; ++l) {
      u[l] = t.value(u[l]);
      y[l] += ss * u[l];
    }
    if (!s && i + 1 < D) sm = smooth_next(sm, a, i);
  }
}

// ---- fused forward + reverse sweep (MATH.md section 4) -------------------------------------
//
// For L points of one seed: runs the forward sweep, asks `head` for dL/dy of each point
// (head(l, y) -> gy; it may also accumulate a loss), then the reverse sweep, reporting the
// per-point contributions of every layer to `acc`:
//   acc.layer(i, ga, gs): ga[l] = gy * dy/da_i (through the waves), gs[l] = gy * dy/ds_i
//   acc.input(gx):        gx[l] = gy * dy/dx
// `s` is the full scales row (smooth scales materialised by the caller).
//
// The reverse sweep needs every wave value W_{i-1}. Rather than storing D of them per point,
// layers are processed in chunks of CHUNK from the top: the forward is recomputed from x up to
// the chunk and the chunk's inputs are kept in `win`. With CHUNK >= D this is one forward and
// one reverse pass; deeper networks cost ceil(D/CHUNK)/2 extra forward passes, with no cap on D.
// The chunk loops have compile-time trip counts, so on the GPU `win` lives in registers.
template <typename T, int L, int CHUNK, typename Head, typename Acc>
CN_HD void backward_lanes(const T (&x)[L], const T* a, const T* s, int D, int sign, Head& head,
                          Acc& acc) {
  T win[CHUNK][L];  // inputs W_{i-1} of the chunk's layers
  T wout[L];        // W_i of the layer being reversed
  T gy[L], lam[L];  // dL/dy and lambda_i * gy (MATH.md section 4)
  const int nchunks = (D + CHUNK - 1) / CHUNK;
  for (int c = nchunks - 1; c >= 0; --c) {
    const int c0 = c * CHUNK;
    const bool top = (c == nchunks - 1);
    T u[L], y[L];
    CN_UNROLL for (int l = 0; l < L; ++l) { u[l] = x[l]; y[l] = x[l]; }
    // Forward up to the chunk; the output sum is only needed on the first (top) pass.
    for (int i = 0; i < c0; ++i) {
      const Tri<T> t(a[i]);
      const T ss = T(sign) * s[i];
      CN_UNROLL for (int l = 0; l < L; ++l) {
        u[l] = t.value(u[l]);
        if (top) y[l] += ss * u[l];
      }
    }
    CN_UNROLL for (int j = 0; j < CHUNK; ++j) {
      if (c0 + j < D) {
        const Tri<T> t(a[c0 + j]);
        const T ss = T(sign) * s[c0 + j];
        CN_UNROLL for (int l = 0; l < L; ++l) {
          win[j][l] = u[l];
          u[l] = t.value(u[l]);
          if (top) y[l] += ss * u[l];
        }
      }
    }
    if (top) {
      const T ss = T(sign) * s[D - 1];
      CN_UNROLL for (int l = 0; l < L; ++l) {
        gy[l] = head(l, y[l]);
        wout[l] = u[l];
        lam[l] = gy[l] * ss;
      }
    }
    CN_UNROLL for (int j = CHUNK - 1; j >= 0; --j) {
      const int i = c0 + j;
      if (i < D) {
        const Tri<T> t(a[i]);
        T ga[L], gs[L], carry[L];
        CN_UNROLL for (int l = 0; l < L; ++l) {
          const T w = win[j][l];
          ga[l] = lam[l] * t.da(w);
          gs[l] = T(sign) * (gy[l] * wout[l]);
          carry[l] = lam[l] * t.du(w);  // dL/dW_{i-1} through layer i
          wout[l] = w;
        }
        acc.layer(i, ga, gs);
        if (i > 0) {
          const T ss = T(sign) * s[i - 1];
          CN_UNROLL for (int l = 0; l < L; ++l) lam[l] = gy[l] * ss + carry[l];
        } else {
          T gx[L];
          CN_UNROLL for (int l = 0; l < L; ++l) gx[l] = gy[l] + carry[l];
          acc.input(gx);
        }
      }
    }
  }
}

}  // namespace cn
