// Bit-packing of spike tensors (values exactly 0 or 1) for saving them for backward: 8 elements per byte,
// element i of the flat tensor in bit (i % 8) of byte i / 8 (NumPy's packbits with bitorder="little").
//
//   pack:   out[j] = sum_{b<8} [raw(x[8j + b]) & ~sign != 0] << b      (zero test on the raw bits: no float compare)
//   unpack: raw(y[8j + b]) = bit b of in[j] ? one : 0                  (`one` = the raw bits of 1.0 in that dtype)
//
// The element type is given by its width (2, 4 or 8 bytes: fp16/bf16, fp32, fp64); bytes are spread over OpenMP
// threads. A trailing partial byte (numel not a multiple of 8) is handled by the caller's padding-free bound n.
#include <cstdint>

namespace {

template <typename U>
void pack(const U* x, uint8_t* out, int64_t n, int threads) {
  const U magnitude = static_cast<U>(~(U(1) << (8 * sizeof(U) - 1)));
  const int64_t bytes = (n + 7) / 8;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t j = 0; j < bytes; ++j) {
    const int64_t start = 8 * j, stop = start + 8 < n ? start + 8 : n;
    uint8_t byte = 0;
    for (int64_t i = start; i < stop; ++i) byte |= static_cast<uint8_t>((x[i] & magnitude) != 0) << (i - start);
    out[j] = byte;
  }
}

template <typename U>
void unpack(const uint8_t* in, U* y, int64_t n, uint64_t one, int threads) {
  const U value = static_cast<U>(one);
  const int64_t bytes = (n + 7) / 8;
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t j = 0; j < bytes; ++j) {
    const int64_t start = 8 * j, stop = start + 8 < n ? start + 8 : n;
    const uint8_t byte = in[j];
    for (int64_t i = start; i < stop; ++i) y[i] = ((byte >> (i - start)) & 1) ? value : U(0);
  }
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
