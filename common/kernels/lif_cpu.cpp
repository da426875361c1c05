// IF/LIF multi-step forward and closed-form BPTT backward on time-major [T, N] arrays, parallel over neurons.
//
//   forward:  h[t] = k_v v[t-1] + k_x x[t] + c;  s[t] = (h[t] >= v_th);
//             v[t] = s ? v_reset : h (hard)  |  v[t] = s ? h - v_th : h (soft)
//   backward: sg = g'(h[t] - v_th);  dv/dh = 1 - s + [!detach] (v_reset - h) sg  (hard)  |  1 - [!detach] v_th sg;
//             grad_h = grad_s[t] sg + grad_v dv/dh;  grad_x[t] = k_x grad_h;  grad_v <- k_v grad_h
//
// Null pointers: h_seq (forward without grad: not stored), grad_v_last (zero), grad_v_init (not needed).
// cpu_native.py prepends `#define SNN_SG_FLOAT(x)` / `#define SNN_SG_DOUBLE(x)` (the surrogate derivative g'(x)) and
// compiles one shared library per surrogate expression; every (dtype, reset, detach) variant is an exported symbol.
//
// Work unit: a chunk of kChunk neurons for all T steps, its state in a small array (L1), so the inner loop over the
// chunk is contiguous and vectorised; chunks are spread over OpenMP threads (the same libgomp team as torch's
// intra-op pool, whose workers are usually still spinning from the previous torch op, so a region starts at once;
// a private thread pool measured 1.4-2x slower in a training-like sequence of torch ops on 2 cores). Build with
// -ffp-contract=off: the charge is then rounded exactly like the torch reference, so spikes are bitwise identical.
#include <algorithm>
#include <cmath>
#include <cstdint>

#ifdef SNN_LIBMVEC  // glibc's vector math (libmvec): lets `omp simd` loops call exp/pow/cos in SIMD form
extern "C" {
__attribute__((simd("notinbranch"))) float expf(float) noexcept;
__attribute__((simd("notinbranch"))) double exp(double) noexcept;
__attribute__((simd("notinbranch"))) float powf(float, float) noexcept;
__attribute__((simd("notinbranch"))) double pow(double, double) noexcept;
__attribute__((simd("notinbranch"))) float cosf(float) noexcept;
__attribute__((simd("notinbranch"))) double cos(double) noexcept;
}
#endif

namespace {

constexpr int64_t kChunk = 512;

using ChunkFn = void (*)(const void* args, int64_t chunk);

void run_chunks(ChunkFn fn, const void* args, int64_t chunks, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < chunks; ++c) fn(args, c);
}

// ------------------------------------------------------------------------------------------------ kernels
inline float sg_deriv(float x) { return SNN_SG_FLOAT(x); }
inline double sg_deriv(double x) { return SNN_SG_DOUBLE(x); }

template <typename T>
struct ForwardArgs {
  const T* x;
  const T* v_init;
  T* spike;
  T* h_seq;
  T* v_last;
  int64_t steps, n;
  T k_v, k_x, c, v_th, v_reset;
};

template <typename T, bool kHard, bool kStoreH>
void forward_chunk(const void* args, int64_t chunk) {
  const auto& a = *static_cast<const ForwardArgs<T>*>(args);
  const int64_t n0 = chunk * kChunk, len = std::min(kChunk, a.n - n0);
  const T k_v = a.k_v, k_x = a.k_x, c = a.c, v_th = a.v_th, v_reset = a.v_reset;  // locals: outputs cannot alias them
  T v[kChunk];
  std::copy(a.v_init + n0, a.v_init + n0 + len, v);
  for (int64_t t = 0; t < a.steps; ++t) {
    const int64_t off = t * a.n + n0;
    const T* __restrict__ xt = a.x + off;
    T* __restrict__ st = a.spike + off;
    T* __restrict__ ht = kStoreH ? a.h_seq + off : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {  // selects only (no conditional stores): one clean vector loop
      const T h = k_v * v[j] + k_x * xt[j] + c;
      const bool fired = h >= v_th;
      st[j] = fired ? T(1) : T(0);
      if constexpr (kStoreH) ht[j] = h;
      v[j] = fired ? (kHard ? v_reset : h - v_th) : h;
    }
  }
  std::copy(v, v + len, a.v_last + n0);
}

template <typename T>
struct BackwardArgs {
  const T* grad_spike;
  const T* grad_v_last;
  const T* h_seq;
  T* grad_x;
  T* grad_v_init;
  int64_t steps, n;
  int64_t grad_spike_stride_t;  // with kBroadcast: grad_spike[t] is one value for all neurons (e.g. from a sum)
  T k_v, k_x, v_th, v_reset;
};

template <typename T, bool kHard, bool kDetach, bool kBroadcast>
void backward_chunk(const void* args, int64_t chunk) {
  const auto& a = *static_cast<const BackwardArgs<T>*>(args);
  const int64_t n0 = chunk * kChunk, len = std::min(kChunk, a.n - n0);
  const T k_v = a.k_v, k_x = a.k_x, v_th = a.v_th, v_reset = a.v_reset;
  T gv[kChunk];
  if (a.grad_v_last) {
    std::copy(a.grad_v_last + n0, a.grad_v_last + n0 + len, gv);
  } else {
    std::fill(gv, gv + len, T(0));
  }
  for (int64_t t = a.steps - 1; t >= 0; --t) {
    const int64_t off = t * a.n + n0;
    const T* __restrict__ gst = a.grad_spike + (kBroadcast ? t * a.grad_spike_stride_t : off);
    const T* __restrict__ ht = a.h_seq + off;
    T* __restrict__ gxt = a.grad_x + off;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) {
      const T h = ht[j];
      const T over = h - v_th;
      const T sg = sg_deriv(over);
      const T s = over >= T(0) ? T(1) : T(0);
      T dv_dh;
      if constexpr (kHard) {
        dv_dh = kDetach ? T(1) - s : T(1) - s + (v_reset - h) * sg;
      } else {
        dv_dh = kDetach ? T(1) : T(1) - v_th * sg;
      }
      const T grad_h = (kBroadcast ? gst[0] : gst[j]) * sg + gv[j] * dv_dh;
      gxt[j] = grad_h * k_x;
      gv[j] = grad_h * k_v;
    }
  }
  if (a.grad_v_init) std::copy(gv, gv + len, a.grad_v_init + n0);
}

int64_t chunks(int64_t n) { return (n + kChunk - 1) / kChunk; }

}  // namespace

#define SNN_FORWARD(NAME, T, HARD, STORE_H)                                                                        \
  extern "C" void NAME(const T* x, const T* v_init, T* spike, T* h_seq, T* v_last, int64_t steps, int64_t n,       \
                       double k_v, double k_x, double c, double v_th, double v_reset, int threads) {               \
    const ForwardArgs<T> args{x, v_init, spike, h_seq, v_last, steps, n, T(k_v), T(k_x), T(c), T(v_th), T(v_reset)}; \
    run_chunks(forward_chunk<T, HARD, STORE_H>, &args, chunks(n), threads);                                         \
  }
#define SNN_BACKWARD(NAME, T, HARD, DETACH)                                                                        \
  extern "C" void NAME(const T* grad_spike, const T* grad_v_last, const T* h_seq, T* grad_x, T* grad_v_init,       \
                       int64_t steps, int64_t n, int64_t grad_spike_stride_t, int grad_spike_broadcast,           \
                       double k_v, double k_x, double v_th, double v_reset, int threads) {                        \
    const BackwardArgs<T> args{grad_spike, grad_v_last, h_seq, grad_x, grad_v_init, steps, n,                      \
                               grad_spike_stride_t, T(k_v), T(k_x), T(v_th), T(v_reset)};                          \
    run_chunks(grad_spike_broadcast ? backward_chunk<T, HARD, DETACH, true> : backward_chunk<T, HARD, DETACH, false>, \
               &args, chunks(n), threads);                                                                         \
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
