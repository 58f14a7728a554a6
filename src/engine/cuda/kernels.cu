/*
 * The CUDA backend's kernels (see kernels.cuh for the layouts). Each one mirrors an operation of
 * the CPU backend (src/engine/cpu/forward.c) and is tested against it by normalized error; the
 * arithmetic is f32 throughout, so the differences are rounding order and the rounding of
 * activations to bf16/f16 before a matrix product.
 */
#include "kernels.cuh"

#include <limits.h>
#include <math.h>

/* ---- reductions ---- */

template <typename T> static __device__ __forceinline__ T warp_sum(T v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it. sh: 32
 * elements of shared memory, reusable right after the call returns. */
template <typename T> static __device__ T block_sum(T v, T *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : (T)0;
    if (warp == 0) v = warp_sum(v);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

static __device__ float block_max(float v, float *sh)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = threadIdx.x < nw ? sh[threadIdx.x] : -INFINITY;
    if (warp == 0) v = warp_max(v);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

/* The largest value and, among equal ones, the smallest index (the CPU's argmax keeps the first
 * maximum). Index INT_MAX when every value was -inf or NaN. */
static __device__ void block_argmax(float *v, int *i, float *shv, int *shi)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    float bv = *v;
    int bi = *i;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) shv[warp] = bv, shi[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = lane < nw ? shv[lane] : -INFINITY;
        bi = lane < nw ? shi[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if (lane == 0) shv[0] = bv, shi[0] = bi;
    }
    __syncthreads();
    *v = shv[0];
    *i = shi[0];
    __syncthreads();
}

static unsigned grid_for(size_t n, int threads)
{
    size_t g = (n + (size_t)threads - 1) / (size_t)threads;
    if (g > 65535) g = 65535; /* the kernels stride over the rest */
    return g ? (unsigned)g : 1u;
}

/* ---- upload conversion ---- */

int syn_cuda_convert_supported(int stype)
{
    return stype == SYN_DT_F32 || stype == SYN_DT_F16 || stype == SYN_DT_BF16 ||
           stype == SYN_DT_Q8_0 || stype == SYN_DT_Q4_0 || stype == SYN_DT_Q4_1 ||
           stype == SYN_DT_Q5_0 || stype == SYN_DT_Q5_1 || stype == SYN_DT_Q4_K ||
           stype == SYN_DT_Q5_K || stype == SYN_DT_Q6_K;
}

static __device__ __forceinline__ float f16_bits(const uint8_t *p)
{
    return __half2float(__ushort_as_half((unsigned short)(p[0] | (p[1] << 8))));
}

/* Element j of a Q4_1 / Q5_0 / Q5_1 block (layouts in synapse/tensor.h). */
static __device__ float q32_offset_elem(const uint8_t *b, int stype, int j)
{
    const int has_m = stype != SYN_DT_Q5_0, has_h = stype != SYN_DT_Q4_1;
    const uint8_t *hp = b + (has_m ? 4 : 2), *qs = hp + (has_h ? 4 : 0);
    int q = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
    if (has_h) q |= ((hp[j / 8] >> (j % 8)) & 1) << 4;
    return stype == SYN_DT_Q5_0 ? f16_bits(b) * (float)(q - 16)
                                : f16_bits(b) * (float)q + f16_bits(b + 2);
}

/* Element e (0..255) of a Q4_K / Q5_K / Q6_K super-block (layouts in synapse/tensor.h). */
static __device__ float kquant_elem(const uint8_t *b, int stype, int e)
{
    if (stype == SYN_DT_Q6_K) {
        const int half = e / 128, i = (e % 128) / 32, l = e % 32;
        const uint8_t lo = b[64 * half + l + 32 * (i & 1)], hi = b[128 + 32 * half + l];
        const int q = (i < 2 ? lo & 15 : lo >> 4) | (((hi >> (2 * i)) & 3) << 4);
        return f16_bits(b + 208) * (float)(int8_t)b[192 + e / 16] * (float)(q - 32);
    }
    const int q5 = stype == SYN_DT_Q5_K, j = e / 32, l = e % 32;
    const uint8_t *sc = b + 4, *qs = b + (q5 ? 48 : 16) + 32 * (j / 2);
    int s, m;
    if (j < 4) {
        s = sc[j] & 63;
        m = sc[j + 4] & 63;
    } else {
        s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
        m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
    }
    int q = j % 2 ? qs[l] >> 4 : qs[l] & 15;
    if (q5) q += ((b[16 + l] >> j) & 1) << 4;
    return f16_bits(b) * (float)s * (float)q - f16_bits(b + 2) * (float)m;
}

static __global__ void convert_kernel(const uint8_t *src, int stype, void *dst, int dt, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v;
        if (stype == SYN_DT_F32) {
            v = ((const float *)src)[i];
        } else if (stype == SYN_DT_F16) {
            v = __half2float(((const __half *)src)[i]);
        } else if (stype == SYN_DT_BF16) {
            v = __bfloat162float(((const __nv_bfloat16 *)src)[i]);
        } else if (stype == SYN_DT_Q8_0) { /* 34-byte blocks: f16 d, 32 int8 */
            const uint8_t *b = src + (i / 32) * 34;
            v = f16_bits(b) * (float)(int8_t)b[2 + i % 32];
        } else if (stype == SYN_DT_Q4_0) { /* 18-byte blocks: f16 d, nibbles 0..15, 16..31 */
            const uint8_t *b = src + (i / 32) * 18;
            const int j = (int)(i % 32);
            const int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
            v = f16_bits(b) * (float)(q - 8);
        } else if (stype == SYN_DT_Q4_1 || stype == SYN_DT_Q5_0 || stype == SYN_DT_Q5_1) {
            const size_t bb = stype == SYN_DT_Q4_1 ? 20 : stype == SYN_DT_Q5_0 ? 22 : 24;
            v = q32_offset_elem(src + (i / 32) * bb, stype, (int)(i % 32));
        } else { /* the K-quants, super-blocks of 256 */
            const size_t bb = stype == SYN_DT_Q4_K ? 144 : stype == SYN_DT_Q5_K ? 176 : 210;
            v = kquant_elem(src + (i / 256) * bb, stype, (int)(i % 256));
        }
        st_elem(dst, dt, i, v);
    }
}

void syn_cuda_convert(const void *src, int stype, void *dst, int dt, size_t n, cudaStream_t st)
{
    convert_kernel<<<grid_for(n, 256), 256, 0, st>>>((const uint8_t *)src, stype, dst, dt, n);
}

/* ---- embedding, norms, SwiGLU ---- */

static __global__ void embed_kernel(const void *table, int dt, int dim, const int32_t *tokens,
                                    float *x)
{
    const size_t t = blockIdx.x, row = (size_t)tokens[t];
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        x[t * dim + i] = ld_elem(table, dt, row * dim + i);
}

void syn_cuda_embed(const void *table, int dt, int dim, const int32_t *tokens, int T, float *x,
                    cudaStream_t st)
{
    if (T > 0) embed_kernel<<<T, 256, 0, st>>>(table, dt, dim, tokens, x);
}

static __global__ void rmsnorm_kernel(const float *x, const int32_t *rows, const float *w, int dim,
                                      float eps, void *out, int dt)
{
    __shared__ float sh[32];
    const size_t r = blockIdx.x;
    const float *xr = x + (rows ? (size_t)rows[r] : r) * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss, sh);
    const float scale = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        st_elem(out, dt, r * dim + i, xr[i] * scale * w[i]);
}

void syn_cuda_rmsnorm(const float *x, const int32_t *rows, const float *w, int n_rows, int dim,
                      float eps, void *out, int dt, cudaStream_t st)
{
    if (n_rows > 0) rmsnorm_kernel<<<n_rows, 256, 0, st>>>(x, rows, w, dim, eps, out, dt);
}

static __global__ void swiglu_kernel(const float *gu, int f, size_t n, void *out, int dt)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t t = i / f, j = i % f;
        const float g = gu[t * 2 * f + j], u = gu[t * 2 * f + f + j];
        st_elem(out, dt, i, g / (1.0f + expf(-g)) * u);
    }
}

void syn_cuda_swiglu(const float *gu, int T, int f, void *out, int dt, cudaStream_t st)
{
    const size_t n = (size_t)T * f;
    if (n) swiglu_kernel<<<grid_for(n, 256), 256, 0, st>>>(gu, f, n, out, dt);
}

/* ---- RoPE and the KV write ---- */

/* One block per token; one thread per rotated pair of q and k, then per element of v. The q and
 * k heads are adjacent in the row (q | k | v), so head h < n_head + n_kv_head starts at h*hd. */
static __global__ void rope_store_kernel(struct syn_cuda_rope r, struct syn_cuda_kv kv)
{
    const int t = blockIdx.x, seq = kv.seq[t];
    if (seq < 0) return;
    const int pos = kv.pos[t], hd = r.head_dim, half = hd / 2;
    const int qd = r.n_head * hd, kvd = r.n_kv_head * hd;
    float *row = r.qkv + (size_t)t * r.qkv_w;
    const float *cs = r.cos_t + (size_t)pos * half, *sn = r.sin_t + (size_t)pos * half;
    const int32_t block = kv.block_tables[(size_t)seq * kv.max_blocks + pos / kv.block_tokens];
    float *kslot = kv.kv + (size_t)block * kv.block_stride + kv.layer_off +
                   (size_t)(pos % kv.block_tokens) * kvd;
    float *vslot = kslot + (size_t)kv.block_tokens * kvd;
    const int n_pairs = (r.n_head + r.n_kv_head) * half;
    for (int i = threadIdx.x; i < n_pairs; i += blockDim.x) {
        const int h = i / half, j = i % half;
        const int a = r.neox ? j : 2 * j, b = r.neox ? j + half : 2 * j + 1;
        const int ia = h * hd + a, ib = h * hd + b;
        float x0 = row[ia], x1 = row[ib];
        if (r.bias) x0 += r.bias[ia], x1 += r.bias[ib];
        const float y0 = x0 * cs[j] - x1 * sn[j], y1 = x0 * sn[j] + x1 * cs[j];
        if (h < r.n_head) {
            row[ia] = y0;
            row[ib] = y1;
        } else {
            kslot[ia - qd] = y0;
            kslot[ib - qd] = y1;
        }
    }
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        float v = row[qd + kvd + i];
        if (r.bias) v += r.bias[qd + kvd + i];
        vslot[i] = v;
    }
}

void syn_cuda_rope_store(const struct syn_cuda_rope *r, const struct syn_cuda_kv *kv, int T,
                         cudaStream_t st)
{
    if (T > 0) rope_store_kernel<<<T, 128, 0, st>>>(*r, *kv);
}

/* ---- attention ----
 * Block (tile, kv head, split). Its rows are the tile's (token, query head) pairs of that kv
 * head's group: row r is token t0 + r / group, head kvh * group + r % group; warp w owns rows w,
 * w + nwarps, ... (at most ATT_MAX_RPW). Keys go through shared memory ATT_CHUNK at a time; in
 * each chunk lane j scores key j against the row's query, the warp updates the row's running max
 * and sum (online softmax) and accumulates p * V with lane e owning output elements e, e + 32, ...
 *
 * Shared memory (floats): q (max_rows, hd) | K (ATT_CHUNK, hd + 1: the odd stride keeps lanes
 * reading different rows on different banks) | V (ATT_CHUNK, hd) | p (nwarps, 32). */

size_t syn_cuda_attention_smem(int head_dim, int max_rows)
{
    const int nwarps = max_rows < ATT_MAX_WARPS ? max_rows : ATT_MAX_WARPS;
    return sizeof(float) * ((size_t)max_rows * head_dim + (size_t)ATT_CHUNK * (head_dim + 1) +
                            (size_t)ATT_CHUNK * head_dim + (size_t)nwarps * 32);
}

template <int NE>
static __global__ void __launch_bounds__(ATT_MAX_WARPS * 32)
    attention_kernel(struct syn_cuda_attn a, struct syn_cuda_kv kv)
{
    extern __shared__ float smem[];
    const int hd = a.head_dim, group = a.n_head / a.n_kv_head, ldk = hd + 1;
    const int nwarps = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int2 tile = a.tiles[blockIdx.x];
    const int t0 = tile.x, nq = tile.y, kvh = blockIdx.y, z = blockIdx.z, nsplit = gridDim.z;
    const int rows = nq * group, kvd = a.n_kv_head * hd, qd = a.n_head * hd;
    float *qs = smem;
    float *ks = qs + (size_t)a.max_rows * hd;
    float *vs = ks + (size_t)ATT_CHUNK * ldk;
    float *ps = vs + (size_t)ATT_CHUNK * hd;
    const int seq = kv.seq[t0];

    /* the keys of this split: the tile's last token sees the most, positions 0..pos */
    const int kmax = seq >= 0 ? kv.pos[t0 + nq - 1] + 1 : 0;
    int per = (kmax + nsplit - 1) / nsplit;
    per = (per + ATT_CHUNK - 1) / ATT_CHUNK * ATT_CHUNK;
    const int k_begin = z * per, k_end = min(kmax, k_begin + per);

    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
        const int r = i / hd, e = i - r * hd;
        const int t = t0 + r / group, h = kvh * group + r % group;
        qs[i] = a.q[(size_t)t * a.q_stride + (size_t)h * hd + e];
    }
    float m[ATT_MAX_RPW], l[ATT_MAX_RPW], acc[ATT_MAX_RPW][NE];
    int rpos[ATT_MAX_RPW];
#pragma unroll
    for (int i = 0; i < ATT_MAX_RPW; i++) {
        const int r = warp + i * nwarps;
        m[i] = -INFINITY;
        l[i] = 0.0f;
        rpos[i] = r < rows && seq >= 0 ? kv.pos[t0 + r / group] : -1;
#pragma unroll
        for (int k = 0; k < NE; k++) acc[i][k] = 0.0f;
    }
    const int32_t *bt = seq >= 0 ? kv.block_tables + (size_t)seq * kv.max_blocks : nullptr;

    for (int c = k_begin; c < k_end; c += ATT_CHUNK) {
        const int nk = min(ATT_CHUNK, k_end - c);
        __syncthreads(); /* the previous chunk is consumed (and q is staged, the first time) */
        for (int i = threadIdx.x; i < nk * hd; i += blockDim.x) {
            const int j = i / hd, e = i - j * hd, p = c + j;
            const float *src = kv.kv + (size_t)bt[p / kv.block_tokens] * kv.block_stride +
                               kv.layer_off + (size_t)(p % kv.block_tokens) * kvd +
                               (size_t)kvh * hd + e;
            ks[j * ldk + e] = src[0];
            vs[j * hd + e] = src[(size_t)kv.block_tokens * kvd];
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < ATT_MAX_RPW; i++) {
            const int r = warp + i * nwarps;
            if (r >= rows) break; /* uniform across the warp */
            const int j = c + lane;
            float s = -INFINITY;
            if (lane < nk && j <= rpos[i]) {
                const float *qr = qs + (size_t)r * hd, *kr = ks + (size_t)lane * ldk;
                float d = 0.0f;
                for (int e = 0; e < hd; e++) d += qr[e] * kr[e];
                s = d * a.scale;
            }
            const float cmax = warp_max(s);
            if (cmax == -INFINITY) continue; /* nothing visible to this row in this chunk */
            const float m_new = fmaxf(m[i], cmax);
            const float corr = expf(m[i] - m_new); /* 0 while m[i] is still -inf */
            const float p = s == -INFINITY ? 0.0f : expf(s - m_new);
            l[i] = l[i] * corr + warp_sum(p);
            ps[warp * 32 + lane] = p;
            __syncwarp();
#pragma unroll
            for (int k = 0; k < NE; k++) {
                const int e = lane + 32 * k;
                if (e < hd) {
                    float v = acc[i][k] * corr;
                    for (int jj = 0; jj < nk; jj++) v += ps[warp * 32 + jj] * vs[jj * hd + e];
                    acc[i][k] = v;
                }
            }
            __syncwarp();
            m[i] = m_new;
        }
    }

#pragma unroll
    for (int i = 0; i < ATT_MAX_RPW; i++) {
        const int r = warp + i * nwarps;
        if (r >= rows) break;
        const int t = t0 + r / group, h = kvh * group + r % group;
        if (nsplit == 1) {
            const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
#pragma unroll
            for (int k = 0; k < NE; k++) {
                const int e = lane + 32 * k;
                if (e < hd)
                    st_elem(a.out, a.dt, (size_t)t * qd + (size_t)h * hd + e, acc[i][k] * inv);
            }
        } else {
            /* partial: (m, l, acc[hd]) per (token, head, split), combined below */
            const size_t b = ((size_t)t * a.n_head + h) * nsplit + z;
            float *pp = a.part + b * (size_t)(hd + 2);
            if (lane == 0) pp[0] = m[i], pp[1] = l[i];
#pragma unroll
            for (int k = 0; k < NE; k++) {
                const int e = lane + 32 * k;
                if (e < hd) pp[2 + e] = acc[i][k];
            }
        }
    }
}

/* One block per (token, head): merges the splits' partial softmaxes. A split that saw no key
 * has l = 0 (and m = -inf) and weighs nothing; a row with no key at all (padding) gets zeros. */
static __global__ void attn_combine_kernel(const float *part, int hd, int nsplit, void *out, int dt)
{
    const size_t row = blockIdx.x;
    const float *pp = part + row * nsplit * (size_t)(hd + 2);
    float mx = -INFINITY, sum = 0.0f;
    for (int s = 0; s < nsplit; s++)
        if (pp[s * (hd + 2) + 1] > 0.0f) mx = fmaxf(mx, pp[s * (hd + 2)]);
    for (int s = 0; s < nsplit; s++) {
        const float *q = pp + s * (hd + 2);
        if (q[1] > 0.0f) sum += q[1] * expf(q[0] - mx);
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float v = 0.0f;
        for (int s = 0; s < nsplit; s++) {
            const float *q = pp + s * (hd + 2);
            if (q[1] > 0.0f) v += q[2 + e] * expf(q[0] - mx);
        }
        st_elem(out, dt, row * hd + e, v * inv);
    }
}

typedef void (*attention_fn)(struct syn_cuda_attn, struct syn_cuda_kv);

static attention_fn attention_variant(int head_dim)
{
    if (head_dim <= 32) return attention_kernel<1>;
    if (head_dim <= 64) return attention_kernel<2>;
    if (head_dim <= 128) return attention_kernel<4>;
    if (head_dim <= ATT_MAX_HD) return attention_kernel<8>;
    return nullptr;
}

int syn_cuda_attention_prepare(int head_dim, int max_rows)
{
    attention_fn fn = attention_variant(head_dim);
    if (!fn || max_rows < 1 || max_rows > ATT_MAX_ROWS) return SYN_EUNSUPPORTED;
    int rc = SYN_OK, dev = 0, optin = 0;
    const size_t smem = syn_cuda_attention_smem(head_dim, max_rows);
    CU_TRY(cudaGetDevice(&dev));
    CU_TRY(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (smem > (size_t)optin) {
        syn_error("cuda",
                  "attention needs %zu bytes of shared memory per block (head_dim %d, %d "
                  "rows); the device allows %d",
                  smem, head_dim, max_rows, optin);
        return SYN_EUNSUPPORTED;
    }
    if (smem > 48 * 1024)
        CU_TRY(cudaFuncSetAttribute((const void *)fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    (int)smem));
out:
    return rc;
}

int syn_cuda_attention_shape(const struct syn_hparams *hp, int *group, int *tile_tokens)
{
    if (hp->head_dim % 2 || hp->head_dim > ATT_MAX_HD || hp->n_kv_head < 1 ||
        hp->n_head % hp->n_kv_head || hp->n_head / hp->n_kv_head > ATT_MAX_ROWS)
        return SYN_EUNSUPPORTED;
    *group = hp->n_head / hp->n_kv_head;
    int bq = ATT_MAX_ROWS / *group;
    *tile_tokens = bq < 1 ? 1 : bq > 16 ? 16 : bq;
    int rc = syn_cuda_attention_prepare(hp->head_dim, *group);
    if (rc == SYN_OK) rc = syn_cuda_attention_prepare(hp->head_dim, *group * *tile_tokens);
    return rc;
}

void syn_cuda_attention(const struct syn_cuda_attn *a, const struct syn_cuda_kv *kv,
                        cudaStream_t st)
{
    if (a->n_tiles < 1) return;
    attention_fn fn = attention_variant(a->head_dim);
    const int nwarps = a->max_rows < ATT_MAX_WARPS ? a->max_rows : ATT_MAX_WARPS;
    const dim3 grid((unsigned)a->n_tiles, (unsigned)a->n_kv_head, (unsigned)a->n_split);
    fn<<<grid, nwarps * 32, syn_cuda_attention_smem(a->head_dim, a->max_rows), st>>>(*a, *kv);
    if (a->n_split > 1) {
        const int threads = a->head_dim <= 32 ? 32 : a->head_dim <= 128 ? 128 : 256;
        attn_combine_kernel<<<(unsigned)(a->T * a->n_head), threads, 0, st>>>(
            a->part, a->head_dim, a->n_split, a->out, a->dt);
    }
}

/* ---- sampling ----
 * One block of 1024 threads per row, doing what syn_sampler_sample does without penalties:
 * greedy is the first argmax; otherwise softmax at the temperature, the candidates above the
 * min-p and top-p floors, then (when top-k or top-p truncate) the candidates in descending order
 * of probability, ties by id, cut to top-k and to the nucleus, and the one where the running
 * mass passes u * mass. The sort is a bitonic sort of at most SORT_CAP candidates in shared
 * memory; to get there, top-k and top-p first raise a probability threshold by bisection on the
 * float's bits, keeping a superset of what the CPU keeps. Should more than SORT_CAP survive (a
 * top-p near 1 over a flat distribution), the draw walks them in id order instead: same
 * distribution, a different token for the same u. */

#define SAMPLE_THREADS 1024
#define SORT_CAP       1024

struct sample_shared {
    float key[SORT_CAP];
    int id[SORT_CAP];
    double dpart[SAMPLE_THREADS];
    double dsh[32];
    float fsh[32];
    int ish[32];
    int count;
    int pick;
};

static __device__ __forceinline__ bool kept(float w, float thr)
{
    return w >= thr && w > 0.0f;
}

static __device__ int count_kept(const float *w, int n, float thr, struct sample_shared *sh)
{
    int c = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) c += kept(w[i], thr);
    return block_sum(c, sh->ish);
}

static __device__ double mass_kept(const float *w, int n, float thr, struct sample_shared *sh)
{
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (kept(w[i], thr)) s += w[i];
    return block_sum(s, sh->dsh);
}

/* The draw over the kept tokens in id order: thread k owns ids [k*chunk, (k+1)*chunk). */
static __device__ int pick_in_id_order(const float *w, int n, float thr, double u,
                                       struct sample_shared *sh)
{
    const int chunk = (n + blockDim.x - 1) / blockDim.x;
    const int lo = min(n, (int)threadIdx.x * chunk), hi = min(n, lo + chunk);
    double mine = 0.0;
    int last = -1;
    for (int i = lo; i < hi; i++)
        if (kept(w[i], thr)) mine += w[i], last = i;
    sh->dpart[threadIdx.x] = mine;
    if (threadIdx.x == 0) sh->pick = -1;
    __syncthreads();
    if (threadIdx.x == 0) { /* exclusive scan, in thread (= id) order */
        double acc = 0.0;
        for (int k = 0; k < (int)blockDim.x; k++) {
            double v = sh->dpart[k];
            sh->dpart[k] = acc;
            acc += v;
        }
        sh->dsh[0] = acc;
    }
    __syncthreads();
    const double r = u * sh->dsh[0];
    double acc = sh->dpart[threadIdx.x];
    if (r >= acc && r < acc + mine) {
        for (int i = lo; i < hi; i++)
            if (kept(w[i], thr)) {
                acc += w[i];
                if (r < acc) {
                    sh->pick = i;
                    break;
                }
            }
    }
    /* nobody matched (r rounded onto the total): the CPU keeps the last candidate */
    float lastf = (float)last;
    float top = block_max(lastf, sh->fsh);
    __syncthreads();
    return sh->pick >= 0 ? sh->pick : (int)top;
}

/* Largest threshold whose kept count (by_mass = 0) or mass (1) is still >= target. */
static __device__ float raise_threshold(const float *w, int n, float thr, float pmax, int by_mass,
                                        double target, struct sample_shared *sh)
{
    int lo = __float_as_int(thr), hi = __float_as_int(pmax);
    while (lo < hi) {
        const int mid = lo + (hi - lo + 1) / 2;
        const float t = __int_as_float(mid);
        const double have = by_mass ? mass_kept(w, n, t, sh) : (double)count_kept(w, n, t, sh);
        if (have >= target)
            lo = mid;
        else
            hi = mid - 1;
    }
    return __int_as_float(lo);
}

static __device__ __forceinline__ bool before(float ka, int ia, float kb, int ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(const float *logits, int n, const struct syn_sample_spec *specs, float *work,
                  int32_t *out)
{
    __shared__ struct sample_shared sh;
    const int row = blockIdx.x, tid = threadIdx.x;
    const float *lg = logits + (size_t)row * n;
    float *w = work + (size_t)row * n;
    const struct syn_sample_spec sp = specs[row];

    float mx = -INFINITY;
    int arg = INT_MAX;
    for (int i = tid; i < n; i += blockDim.x)
        if (lg[i] > mx) mx = lg[i], arg = i;
    block_argmax(&mx, &arg, sh.fsh, sh.ish);
    if (sp.temperature == 0.0f) {
        if (tid == 0) out[row] = arg == INT_MAX ? 0 : arg;
        return;
    }

    /* softmax at the temperature: f32 terms, a double sum, as the CPU does */
    const float inv_t = 1.0f / sp.temperature;
    double sum = 0.0;
    for (int i = tid; i < n; i += blockDim.x) {
        const float e = expf((lg[i] - mx) * inv_t);
        w[i] = e;
        sum += e;
    }
    sum = block_sum(sum, sh.dsh);
    const float inv_sum = (float)(1.0 / sum);
    float pmax = 0.0f;
    for (int i = tid; i < n; i += blockDim.x) {
        w[i] *= inv_sum;
        pmax = fmaxf(pmax, w[i]);
    }
    pmax = block_max(pmax, sh.fsh); /* also orders every thread's writes to w before reads */

    float thr = sp.min_p > 0.0f ? sp.min_p * pmax : 0.0f;
    if (sp.top_p < 1.0f && n > 1) thr = fmaxf(thr, (1.0f - sp.top_p) / (float)(n - 1));
    const int nc = count_kept(w, n, thr, &sh);
    if (nc == 0) { /* everything underflowed below the floor: the first token at pmax */
        int first = INT_MAX;
        for (int i = tid; i < n; i += blockDim.x)
            if (w[i] == pmax) {
                first = i;
                break;
            }
        float dummy = 0.0f;
        block_argmax(&dummy, &first, sh.fsh, sh.ish);
        if (tid == 0) out[row] = first == INT_MAX ? 0 : first;
        return;
    }
    const bool top_k = sp.top_k > 0 && sp.top_k < nc;
    if (!top_k && !(sp.top_p < 1.0f)) {
        const int pick = pick_in_id_order(w, n, thr, sp.u, &sh);
        if (tid == 0) out[row] = pick;
        return;
    }
    const double mass_all = mass_kept(w, n, thr, &sh);
    double mass_k = 0.0; /* the CPU's mass of its top k: those above the threshold, then ties */
    if (top_k) {
        thr = raise_threshold(w, n, thr, pmax, 0, (double)sp.top_k, &sh);
        const float above = __int_as_float(__float_as_int(thr) + 1);
        mass_k = mass_kept(w, n, above, &sh) +
                 (double)(sp.top_k - count_kept(w, n, above, &sh)) * (double)thr;
    }
    if (sp.top_p < 1.0f) {
        /* a little above the limit: a higher target can only lower the threshold, so rounding
         * in this summation order never drops a token the CPU's nucleus keeps */
        const double base = top_k ? mass_k : mass_all;
        thr = raise_threshold(w, n, thr, pmax, 1, (double)sp.top_p * base * (1.0 + 1e-6), &sh);
    }
    const int kc = count_kept(w, n, thr, &sh);
    if (kc > SORT_CAP) {
        const int pick = pick_in_id_order(w, n, thr, sp.u, &sh);
        if (tid == 0) out[row] = pick;
        return;
    }

    /* gather the survivors (in any order), pad, and sort by (probability desc, id asc) */
    if (tid == 0) sh.count = 0;
    sh.key[tid] = -1.0f;
    sh.id[tid] = INT_MAX;
    __syncthreads();
    for (int i = tid; i < n; i += blockDim.x)
        if (kept(w[i], thr)) {
            const int slot = atomicAdd(&sh.count, 1);
            sh.key[slot] = w[i];
            sh.id[slot] = i;
        }
    __syncthreads();
    for (int k = 2; k <= SORT_CAP; k <<= 1) {
        for (int j = k >> 1; j > 0; j >>= 1) {
            const int i = tid, x = tid ^ j;
            if (x > i) {
                const bool asc = (i & k) == 0;
                const bool swap = asc ? before(sh.key[x], sh.id[x], sh.key[i], sh.id[i])
                                      : before(sh.key[i], sh.id[i], sh.key[x], sh.id[x]);
                if (swap) {
                    const float tk = sh.key[i];
                    const int ti = sh.id[i];
                    sh.key[i] = sh.key[x];
                    sh.id[i] = sh.id[x];
                    sh.key[x] = tk;
                    sh.id[x] = ti;
                }
            }
            __syncthreads();
        }
    }
    if (tid == 0) { /* the CPU's cut and draw, in its order */
        int m = kc;
        if (top_k && sp.top_k < m) m = sp.top_k;
        /* the mass top-p scales: of the top k (summed in the CPU's order when all k survived
         * the top-p threshold, else as counted above), or of every candidate */
        double mass = top_k ? mass_k : mass_all;
        if (top_k && kc >= sp.top_k) {
            mass = 0.0;
            for (int i = 0; i < m; i++) mass += sh.key[i];
        }
        if (sp.top_p < 1.0f) {
            const double limit = (double)sp.top_p * mass;
            double acc = 0.0;
            for (int i = 0; i < m; i++) {
                acc += sh.key[i];
                if (acc >= limit) {
                    m = i + 1;
                    mass = acc;
                    break;
                }
            }
        }
        const double r = sp.u * mass;
        double acc = 0.0;
        int chosen = sh.id[m - 1];
        for (int i = 0; i < m; i++) {
            acc += sh.key[i];
            if (r < acc) {
                chosen = sh.id[i];
                break;
            }
        }
        out[row] = chosen;
    }
}

void syn_cuda_sample(const float *logits, int rows, int n_vocab,
                     const struct syn_sample_spec *specs, float *work, int32_t *out,
                     cudaStream_t st)
{
    if (rows > 0) sample_kernel<<<rows, SAMPLE_THREADS, 0, st>>>(logits, n_vocab, specs, work, out);
}
