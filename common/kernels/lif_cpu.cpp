// IF/LIF multi-step forward and closed-form BPTT backward on time-major [T, N] arrays, parallel over neurons.
//
//   forward:  h[t] = k_v v[t-1] + k_x x[t] + c;  s[t] = (h[t] >= v_th);
//             v[t] = s ? v_reset : h (hard)  |  v[t] = s ? h - v_th : h (soft)
//   backward: sg = g'(h[t] - v_th);  dv/dh = 1 - s + [!detach] (v_reset - h) sg  (hard)  |  1 - [!detach] v_th sg;
//             grad_h = grad_s[t] sg + grad_v dv/dh;  grad_x[t] = k_x grad_h;  grad_v <- k_v grad_h
//
// cpu_native.py prepends `#define SNN_SG_FLOAT(x)` / `#define SNN_SG_DOUBLE(x)` (the surrogate derivative g'(x)) and
// compiles one shared library per surrogate expression; every (dtype, reset, detach) variant is an exported symbol.
// Each OpenMP thread takes chunks of kChunk neurons and runs all T steps for a chunk, keeping the state in a small
// array (L1) so the inner loop over the chunk is contiguous and vectorisable. Build with -ffp-contract=off: the
// charge is then rounded exactly like the torch reference, so spikes are bitwise identical.
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace {

constexpr int64_t kChunk = 512;

inline float sg_deriv(float x) { return SNN_SG_FLOAT(x); }
inline double sg_deriv(double x) { return SNN_SG_DOUBLE(x); }

template <typename T, bool kHard, bool kStoreH>
void forward(const T* x, const T* v_init, T* spike, T* h_seq, T* v_last, int64_t steps, int64_t n, double k_v_,
             double k_x_, double c_, double v_th_, double v_reset_, int threads) {
  const T k_v = T(k_v_), k_x = T(k_x_), c = T(c_), v_th = T(v_th_), v_reset = T(v_reset_);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n0 = 0; n0 < n; n0 += kChunk) {
    const int64_t len = std::min(kChunk, n - n0);
    T v[kChunk];
    std::copy(v_init + n0, v_init + n0 + len, v);
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t off = t * n + n0;
      const T* xt = x + off;
      T* st = spike + off;
      T* ht = kStoreH ? h_seq + off : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const T h = k_v * v[j] + k_x * xt[j] + c;
        const bool fired = h >= v_th;
        st[j] = fired ? T(1) : T(0);
        if (kStoreH) ht[j] = h;
        v[j] = fired ? (kHard ? v_reset : h - v_th) : h;
      }
    }
    std::copy(v, v + len, v_last + n0);
  }
}

template <typename T, bool kHard, bool kDetach>
void backward(const T* grad_spike, const T* grad_v_last, const T* h_seq, T* grad_x, T* grad_v_init, int64_t steps,
              int64_t n, double k_v_, double k_x_, double v_th_, double v_reset_, int threads) {
  const T k_v = T(k_v_), k_x = T(k_x_), v_th = T(v_th_), v_reset = T(v_reset_);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t n0 = 0; n0 < n; n0 += kChunk) {
    const int64_t len = std::min(kChunk, n - n0);
    T gv[kChunk];
    std::copy(grad_v_last + n0, grad_v_last + n0 + len, gv);
    for (int64_t t = steps - 1; t >= 0; --t) {
      const int64_t off = t * n + n0;
      const T* gst = grad_spike + off;
      const T* ht = h_seq + off;
      T* gxt = grad_x + off;
#pragma omp simd
      for (int64_t j = 0; j < len; ++j) {
        const T h = ht[j];
        const T over = h - v_th;
        const T sg = sg_deriv(over);
        const T s = over >= T(0) ? T(1) : T(0);
        T dv_dh;
        if (kHard) {
          dv_dh = kDetach ? T(1) - s : T(1) - s + (v_reset - h) * sg;
        } else {
          dv_dh = kDetach ? T(1) : T(1) - v_th * sg;
        }
        const T grad_h = gst[j] * sg + gv[j] * dv_dh;
        gxt[j] = grad_h * k_x;
        gv[j] = grad_h * k_v;
      }
    }
    std::copy(gv, gv + len, grad_v_init + n0);
  }
}

}  // namespace

#define SNN_FORWARD(NAME, T, HARD, STORE_H)                                                                         \
  extern "C" void NAME(const T* x, const T* v_init, T* spike, T* h_seq, T* v_last, int64_t steps, int64_t n,        \
                       double k_v, double k_x, double c, double v_th, double v_reset, int threads) {                \
    forward<T, HARD, STORE_H>(x, v_init, spike, h_seq, v_last, steps, n, k_v, k_x, c, v_th, v_reset, threads);      \
  }
#define SNN_BACKWARD(NAME, T, HARD, DETACH)                                                                         \
  extern "C" void NAME(const T* grad_spike, const T* grad_v_last, const T* h_seq, T* grad_x, T* grad_v_init,        \
                       int64_t steps, int64_t n, double k_v, double k_x, double v_th, double v_reset, int threads) { \
    backward<T, HARD, DETACH>(grad_spike, grad_v_last, h_seq, grad_x, grad_v_init, steps, n, k_v, k_x, v_th,        \
                              v_reset, threads);                                                                    \
  }

SNN_FORWARD(snn_fwd_f32_hard_h, float, true, true)
SNN_FORWARD(snn_fwd_f32_hard_noh, float, true, false)
SNN_FORWARD(snn_fwd_f32_soft_h, float, false, true)
SNN_FORWARD(snn_fwd_f32_soft_noh, float, false, false)
SNN_FORWARD(snn_fwd_f64_hard_h, double, true, true)
SNN_FORWARD(snn_fwd_f64_hard_noh, double, true, false)
SNN_FORWARD(snn_fwd_f64_soft_h, double, false, true)
SNN_FORWARD(snn_fwd_f64_soft_noh, double, false, false)

SNN_BACKWARD(snn_bwd_f32_hard_detach, float, true, true)
SNN_BACKWARD(snn_bwd_f32_hard_keep, float, true, false)
SNN_BACKWARD(snn_bwd_f32_soft_detach, float, false, true)
SNN_BACKWARD(snn_bwd_f32_soft_keep, float, false, false)
SNN_BACKWARD(snn_bwd_f64_hard_detach, double, true, true)
SNN_BACKWARD(snn_bwd_f64_hard_keep, double, true, false)
SNN_BACKWARD(snn_bwd_f64_soft_detach, double, false, true)
SNN_BACKWARD(snn_bwd_f64_soft_keep, double, false, false)
