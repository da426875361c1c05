// Bit-packing of spike tensors (values exactly 0 or 1) for saving them for backward: 8 elements per byte,
// element i of the flat tensor in bit (i % 8) of byte i / 8 (NumPy's packbits with bitorder="little").
//
//   pack:   out[j] = sum_{b<8} [raw(x[8j + b]) & ~sign != 0] << b      (zero test on the raw bits)
//   unpack: raw(y[8j + b]) = bit b of in[j] ? one : 0                  (`one` = the raw bits of 1.0 in that dtype)
//
// The element type is given by its width (2, 4 or 8 bytes: fp16/bf16, fp32, fp64). Whole bytes are spread over
// OpenMP threads; pack reads 8 floats as one AVX vector and takes the sign bits of the compare (movemask) where the
// CPU has AVX2, unpack copies 8 elements from a 256-entry table; the last partial byte is done element by element.
#include <cstdint>
#include <cstring>
#ifdef __AVX2__
#include <immintrin.h>
#endif

namespace {

template <typename U>
inline uint8_t pack_byte(const U* x, int count) {
  const U magnitude = static_cast<U>(~(U(1) << (8 * sizeof(U) - 1)));
  uint8_t byte = 0;
  for (int i = 0; i < count; ++i) byte |= static_cast<uint8_t>((x[i] & magnitude) != 0) << i;
  return byte;
}

#ifdef __AVX2__
template <>
inline uint8_t pack_byte<uint32_t>(const uint32_t* x, int count) {
  if (count < 8) {
    uint8_t byte = 0;
    for (int i = 0; i < count; ++i) byte |= static_cast<uint8_t>((x[i] & 0x7FFFFFFFu) != 0) << i;
    return byte;
  }
  const __m256i magnitude = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i v = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)), magnitude);
  const __m256i zero = _mm256_cmpeq_epi32(v, _mm256_setzero_si256());  // all ones where the element is 0
  return static_cast<uint8_t>(~_mm256_movemask_ps(_mm256_castsi256_ps(zero)));
}
#endif

template <typename U>
void pack(const U* x, uint8_t* out, int64_t n, int threads) {
  const int64_t full = n / 8;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t j = 0; j < full; ++j) out[j] = pack_byte(x + 8 * j, 8);
  if (n % 8) out[full] = pack_byte(x + 8 * full, static_cast<int>(n % 8));
}

template <typename U>
void unpack(const uint8_t* in, U* y, int64_t n, uint64_t one, int threads) {
  U table[256][8];
  for (int b = 0; b < 256; ++b)
    for (int i = 0; i < 8; ++i) table[b][i] = ((b >> i) & 1) ? static_cast<U>(one) : U(0);
  const int64_t full = n / 8;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t j = 0; j < full; ++j) std::memcpy(y + 8 * j, table[in[j]], sizeof(table[0]));
  for (int64_t i = 8 * full; i < n; ++i) y[i] = table[in[full]][i - 8 * full];
}

}  // namespace

extern "C" {
void snn_pack_bits(const void* x, void* out, int64_t n, int width, int threads) {
  auto* o = static_cast<uint8_t*>(out);
  if (width == 2) pack(static_cast<const uint16_t*>(x), o, n, threads);
  if (width == 4) pack(static_cast<const uint32_t*>(x), o, n, threads);
  if (width == 8) pack(static_cast<const uint64_t*>(x), o, n, threads);
}

void snn_unpack_bits(const void* in, void* y, int64_t n, int width, uint64_t one, int threads) {
  auto* i = static_cast<const uint8_t*>(in);
  if (width == 2) unpack(i, static_cast<uint16_t*>(y), n, one, threads);
  if (width == 4) unpack(i, static_cast<uint32_t*>(y), n, one, threads);
  if (width == 8) unpack(i, static_cast<uint64_t*>(y), n, one, threads);
}
}
