__device__ __forceinline__ float snn_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ double snn_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

extern "C" __global__ void snn_fwd_lif_hard_att_float32_d18f217a(
    float* __restrict__ x_seq,
    float* __restrict__ v_init,
    float* __restrict__ spike_seq,
    float* __restrict__ h_seq,
    float* __restrict__ v_last,
    const float k_v,
    const float k_x,
    const float c,
    const float v_th,
    const float v_reset,
    const long long steps,
    const long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = v_init[i];
    for (long long t = 0; t < steps; ++t) {
        const long long k = t * n + i;
        const float h = k_v * v + k_x * x_seq[k] + c;
        const bool fired = h >= v_th;
        if (h_seq) h_seq[k] = h;
        spike_seq[k] = fired ? (float)1 : (float)0;
        v = fired ? v_reset : h;
    }
    v_last[i] = v;
}

extern "C" __global__ void snn_bwd_lif_hard_att_float32_d18f217a(
    float* __restrict__ grad_spike_seq,
    float* __restrict__ grad_v_last,
    float* __restrict__ h_seq,
    float* __restrict__ grad_x_seq,
    float* __restrict__ grad_v_init,
    const float k_v,
    const float k_x,
    const float v_th,
    const float v_reset,
    const long long steps,
    const long long n,
    const long long gs_t,
    const long long gs_n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float grad_v = grad_v_last ? grad_v_last[i] : (float)0;
    for (long long t = steps - 1; t >= 0; --t) {
        const long long k = t * n + i;
        const float h = h_seq[k];
        const float over = h - v_th;
        const float sg = ((1.0f / (1.0f + (3.141592653589793f * (over)) * (3.141592653589793f * (over)))));
        const float s = over >= (float)0 ? (float)1 : (float)0;
        const float dv_dh = (float)1 - s + (v_reset - h) * sg;
        const float grad_h = grad_spike_seq[t * gs_t + i * gs_n] * sg + grad_v * dv_dh;
        grad_x_seq[k] = grad_h * k_x;
        grad_v = grad_h * k_v;
    }
    if (grad_v_init) grad_v_init[i] = grad_v;
}
