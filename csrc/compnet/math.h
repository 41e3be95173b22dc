// The compositional network's per-point math (MATH.md sections 1-4), written once for the CPU
// driver (compnet/cpu.cpp, L lanes of points per call) and the CUDA kernels (compnet/kernels.cu,
// L = 1, one point per thread); see common/portability.h. Plain C++: no torch, no CUDA headers.
#pragma once

#include "../common/portability.h"

namespace cn {

// One triangle layer; the reciprocals are computed once per layer, not per point.
template <typename T>
struct Tri {
  T a, b, ia, ib, ia2, ib2;  // peak, 1 - a, 1/a, 1/(1-a), and their squares
  Tri() = default;  // a slot of a table (TriTable)
  CN_HD explicit Tri(T peak)
      : a(peak), b(T(1) - peak), ia(T(1) / peak), ib(T(1) / b), ia2(ia * ia), ib2(ib * ib) {}
  // T_a(u) = u / a or (1 - u) / (1 - a), correctly rounded, as the reference computes it: the
  // waves are exponentially sensitive to rounding (slopes 1/a, 1/(1-a) > 1 compound over the
  // layers), so the fused op reproduces the reference's waves bitwise. With FMA the quotient is
  // one multiply by the correctly rounded reciprocal plus one FMA correction, which gives the
  // correctly rounded quotient (Markstein's theorem) at a fraction of a division's cost.
  // Ties (u == a) take the left branch; du/da use the same convention (the gradient of the
  // branch the value came from, as torch.where in the reference). Both branches are computed
  // and then selected, so the host compiler turns the lane loops into SIMD blends.
  CN_HD T value(T u) const {
    const bool left = u <= a;
    const T one_m = T(1) - u;
    const T num = left ? u : one_m, den = left ? a : b;
#if CN_HAS_FMA
    const T r = left ? ia : ib;
    const T q = num * r;
    return fma_(fma_(-q, den, num), r, q);
#else
    return num / den;
#endif
  }
  CN_HD T du(T u) const { return u <= a ? ia : -ib; }
  CN_HD T da(T u) const {  // -u / a^2 or (1 - u) / (1 - a)^2
    const bool left = u <= a;
    const T one_m = T(1) - u;
    return (left ? -u : one_m) * (left ? ia2 : ib2);
  }
};

// Where the sweeps get each layer's Tri: computed from the peak at every use (PeakLayers: the CPU
// driver, whose tiles of 64 points amortise it), or read from a table filled once per seed
// (TriTable: the CUDA kernels, one point per thread, where the reciprocals were ~40% of a
// point-layer's arithmetic). The same IEEE operations either way: the same bits.
template <typename T>
struct PeakLayers {
  const T* a;
  CN_HD Tri<T> operator()(int i) const { return Tri<T>(a[i]); }
};
template <typename T>
struct TriTable {
  const Tri<T>* t;
  CN_HD const Tri<T>& operator()(int i) const { return t[i]; }
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

// y = x + sign * sum_i s_i W_i(x) for L points of one seed. SMOOTH: the scales are generated
// on the fly from the peaks `a` (s unused); otherwise `s` is the scales row. `tri(i)` gives layer
// i's Tri (PeakLayers or TriTable, below: the same bits).
template <typename T, int L, bool SMOOTH, typename Layers>
CN_HD void forward_lanes_impl(const T (&x)[L], const Layers& tri, const T* a, const T* s, int D,
                              int sign, T (&y)[L]) {
  T u[L], acc[L];  // local: the compiler need not worry that y aliases a or s
  CN_LANES for (int l = 0; l < L; ++l) { u[l] = x[l]; acc[l] = x[l]; }
  T sm = SMOOTH ? smooth_s0(a, sign) : T(0);
  for (int i = 0; i < D; ++i) {
    const Tri<T> t = tri(i);
    const T ss = T(sign) * (SMOOTH ? sm : s[i]);
    CN_LANES for (int l = 0; l < L; ++l) {
      u[l] = t.value(u[l]);
      acc[l] = madd(ss, u[l], acc[l]);
    }
    if (SMOOTH && i + 1 < D) sm = smooth_next(sm, a, i);
  }
  CN_LANES for (int l = 0; l < L; ++l) y[l] = acc[l];
}

// As above; `s` is the scales row, or nullptr for smooth scales. (Two instantiations rather
// than a branch in the loop, which GCC answered with a scalar loop version.)
template <typename T, int L, typename Layers>
CN_HD void forward_lanes(const T (&x)[L], const Layers& tri, const T* a, const T* s, int D,
                         int sign, T (&y)[L]) {
  if (s)
    forward_lanes_impl<T, L, false>(x, tri, a, s, D, sign, y);
  else
    forward_lanes_impl<T, L, true>(x, tri, a, s, D, sign, y);
}

// ---- fused forward + reverse sweep (MATH.md section 4) -------------------------------------
//
// For L points of one seed: runs the forward sweep, asks `head` for dL/dy of each point
// (head(l, y) -> gy; it may also accumulate a loss), then the reverse sweep, reporting the
// per-point contributions of every layer to `acc`:
//   acc.layer(i, j, ga, gs): layer i (= c0 + j, j its index in the chunk):
//                         ga[l] = gy * dy/da_i (through the waves), gs[l] = gy * dy/ds_i
//   acc.input(gx):        gx[l] = gy * dy/dx
// `s` is the full scales row (smooth scales materialised by the caller); `tri(i)` gives layer i's
// Tri (PeakLayers or TriTable).
//
// The reverse sweep needs every wave value W_{i-1}. Rather than storing D of them per point,
// layers are processed in chunks of CHUNK from the top: the forward is recomputed from x up to
// the chunk and the chunk's inputs are kept in `win`. With CHUNK >= D this is one forward and
// one reverse pass; deeper networks cost ceil(D/CHUNK)/2 extra forward passes, with no cap on D.
// The chunk loops have compile-time trip counts, so on the GPU `win` lives in registers.
//
// backward_chunk runs one chunk c (chunks are numbered from the bottom; the top one, which calls
// `head`, is backward_chunks(D) - 1). Between chunks a point carries only gy and lam (lambda_i *
// gy of the chunk's lowest layer, MATH.md section 4): the CUDA kernels run chunk by chunk over all
// of a seed's points and keep those two per point in memory, so that a lane's gradient sums of
// the chunk's layers stay in registers over all its points.
CN_HD int backward_chunks(int D, int chunk) { return (D + chunk - 1) / chunk; }

template <typename T, int L, int CHUNK, typename Layers, typename Head, typename Acc>
CN_HD void backward_chunk(const T (&x)[L], const Layers& tri, const T* s, int D, int sign, int c,
                          Head& head, Acc& acc, T (&gy)[L], T (&lam)[L]) {
  T win[CHUNK][L];  // inputs W_{i-1} of the chunk's layers
  T wout[L];        // W_i of the layer being reversed
  const int c0 = c * CHUNK;
  const bool top = (c == backward_chunks(D, CHUNK) - 1);
  T u[L], y[L];
  CN_LANES for (int l = 0; l < L; ++l) { u[l] = x[l]; y[l] = x[l]; }
  // Forward up to the chunk; the output sum is only needed on the first (top) pass.
  for (int i = 0; i < c0; ++i) {
    const Tri<T> t = tri(i);
    const T ss = T(sign) * s[i];
    CN_LANES for (int l = 0; l < L; ++l) {
      u[l] = t.value(u[l]);
      if (top) y[l] = madd(ss, u[l], y[l]);
    }
  }
  const int jn = D - c0 < CHUNK ? D - c0 : CHUNK;  // layers in this chunk
  const int jend = CN_FIXED_CHUNK ? CHUNK : jn;
  CN_UNROLL for (int j = 0; j < jend; ++j) {
    if (j < jn) {
      const Tri<T> t = tri(c0 + j);
      const T ss = T(sign) * s[c0 + j];
      CN_LANES for (int l = 0; l < L; ++l) {
        win[j][l] = u[l];
        u[l] = t.value(u[l]);
        if (top) y[l] = madd(ss, u[l], y[l]);
      }
    }
  }
  // W of the chunk's top layer (for a lower chunk, the same value the chunk above started from)
  CN_LANES for (int l = 0; l < L; ++l) wout[l] = u[l];
  if (top) {
    const T ss = T(sign) * s[D - 1];
    CN_LANES for (int l = 0; l < L; ++l) {
      gy[l] = head(l, y[l]);
      lam[l] = gy[l] * ss;
    }
  }
  CN_UNROLL for (int j = jend - 1; j >= 0; --j) {
    const int i = c0 + j;
    if (j < jn) {
      const Tri<T> t = tri(i);
      // lambda_{i-1} = gy * sign * s_{i-1} + (dL/dW_{i-1} through layer i); below layer 0 the
      // same expression with factor 1 is dL/dx = gy + lambda_0 * T'(x).
      const T ss_prev = i > 0 ? T(sign) * s[i - 1] : T(1);
      T ga[L], gs[L];
      CN_LANES for (int l = 0; l < L; ++l) {
        const T w = win[j][l];
        ga[l] = lam[l] * t.da(w);
        gs[l] = T(sign) * (gy[l] * wout[l]);
        lam[l] = madd(lam[l], t.du(w), gy[l] * ss_prev);
        wout[l] = w;
      }
      acc.layer(i, j, ga, gs);
      if (i == 0) acc.input(lam);
    }
  }
}

// All chunks of L points, top to bottom.
template <typename T, int L, int CHUNK, typename Layers, typename Head, typename Acc>
CN_HD void backward_lanes(const T (&x)[L], const Layers& tri, const T* s, int D, int sign,
                          Head& head, Acc& acc) {
  T gy[L], lam[L];  // dL/dy and lambda_i * gy (MATH.md section 4)
  for (int c = backward_chunks(D, CHUNK) - 1; c >= 0; --c)
    backward_chunk<T, L, CHUNK>(x, tri, s, D, sign, c, head, acc, gy, lam);
}

}  // namespace cn
