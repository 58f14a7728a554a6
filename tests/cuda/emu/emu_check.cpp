/*
 * The CUDA backend's own kernels (src/engine/cuda/kernels.cu, compiled unchanged but for the
 * launch syntax) run on the host emulator against the CPU backend's arithmetic, as
 * tests/unit/test_cuda.c does on a GPU: RMSNorm, SwiGLU, the upload conversions, the embedding
 * gather, RoPE + the paged KV write, attention (prefill tiles, decode, GQA, key splits and their
 * combine) and device sampling against syn_sampler_sample. What it cannot check: cuBLAS, graphs,
 * streams, the memory spaces. Run by tests/cuda/run-emu.sh; prints one line per check and ends
 * with "emu: N checks, N failed".
 */
#include "kernels_emu.cu" /* kernels.cu with its launches rewritten (run-emu.sh) */

extern "C" {
#include "synapse/tensor.h"
}

#include "../check_util.h" /* seed, frand, nmse */

#include <stdio.h>
#include <stdlib.h>

#include <vector>

int syn_cuda_fail(cudaError_t, const char *what, const char *file, int line)
{
    fprintf(stderr, "emu: %s failed (%s:%d)\n", what, file, line);
    return -3;
}

int syn_cublas_fail(cublasStatus_t, const char *what, const char *file, int line)
{
    fprintf(stderr, "emu: %s failed (%s:%d)\n", what, file, line);
    return -3;
}

static int g_checks, g_failed;
static std::vector<float> rand_vec(size_t n, float scale)
{
    std::vector<float> v(n);
    for (auto &x : v) x = frand() * scale;
    return v;
}

static void check(const char *what, double err, double tol)
{
    g_checks++;
    bool ok = err <= tol;
    if (!ok) g_failed++;
    printf("%s %-60s nmse %.3g (tolerance %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
}

static void check_eq(const char *what, long got, long want)
{
    g_checks++;
    if (got != want) g_failed++;
    printf("%s %-60s got %ld, want %ld\n", got == want ? "ok  " : "FAIL", what, got, want);
}

/* dt-typed device output back to f32 */
static std::vector<float> to_f32(const void *p, int dt, size_t n)
{
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) {
        if (dt == SYN_DT_F32) v[i] = ((const float *)p)[i];
        if (dt == SYN_DT_F16) v[i] = syn_f16_to_f32(((const uint16_t *)p)[i]);
        if (dt == SYN_DT_BF16) v[i] = syn_bf16_to_f32(((const uint16_t *)p)[i]);
    }
    return v;
}

static void test_rmsnorm_swiglu(void)
{
    const int T = 3, n = 300;
    seed(1);
    auto x = rand_vec((size_t)T * n, 3), w = rand_vec(n, 1);
    std::vector<float> ref((size_t)T * n);
    for (int t = 0; t < T; t++) {
        float ss = 0;
        for (int i = 0; i < n; i++) ss += x[t * n + i] * x[t * n + i];
        float sc = 1.0f / sqrtf(ss / n + 1e-5f);
        for (int i = 0; i < n; i++) ref[t * n + i] = x[t * n + i] * sc * w[i];
    }
    int dts[] = {SYN_DT_F32, SYN_DT_F16, SYN_DT_BF16};
    double tols[] = {1e-12, 1e-6, 1e-4};
    for (int d = 0; d < 3; d++) {
        std::vector<uint8_t> out((size_t)T * n * 4);
        syn_cuda_rmsnorm(x.data(), NULL, w.data(), T, n, 1e-5f, out.data(), dts[d], 0);
        char what[80];
        snprintf(what, sizeof what, "rmsnorm as %s", syn_dtype_name(dts[d]));
        check(what, nmse(to_f32(out.data(), dts[d], (size_t)T * n).data(), ref.data(), ref.size()),
              tols[d]);
    }
    /* rows picked through an index, as the final norm does */
    int32_t rows[2] = {2, 0};
    std::vector<float> out(2 * n);
    syn_cuda_rmsnorm(x.data(), rows, w.data(), 2, n, 1e-5f, out.data(), SYN_DT_F32, 0);
    std::vector<float> ref2(ref.begin() + 2 * n, ref.begin() + 3 * n);
    ref2.insert(ref2.end(), ref.begin(), ref.begin() + n);
    check("rmsnorm of rows by index", nmse(out.data(), ref2.data(), 2 * n), 1e-12);

    const int f = 700;
    auto gu = rand_vec((size_t)T * 2 * f, 6);
    std::vector<float> sref((size_t)T * f), sgot((size_t)T * f);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < f; i++) {
            float g = gu[t * 2 * f + i], u = gu[t * 2 * f + f + i];
            sref[t * f + i] = g / (1.0f + expf(-g)) * u;
        }
    syn_cuda_swiglu(gu.data(), T, f, sgot.data(), SYN_DT_F32, 0);
    check("swiglu", nmse(sgot.data(), sref.data(), sref.size()), 1e-12);
}

static void test_convert_embed(void)
{
    const int rows = 6, K = 64;
    seed(2);
    auto tab = rand_vec((size_t)rows * K, 1);
    /* encode as Q8_0 and Q4_0 with the file layout */
    std::vector<uint8_t> q8((size_t)rows * K / 32 * 34), q4((size_t)rows * K / 32 * 18);
    for (int b = 0; b < rows * K / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(tab[b * 32 + j]));
        uint16_t d8 = syn_f32_to_f16(amax / 127), d4 = syn_f32_to_f16(amax / 7);
        memcpy(&q8[b * 34], &d8, 2);
        memcpy(&q4[b * 18], &d4, 2);
        for (int j = 0; j < 32; j++)
            q8[b * 34 + 2 + j] = (uint8_t)(int8_t)lroundf(tab[b * 32 + j] / (amax / 127));
        for (int j = 0; j < 16; j++) {
            int lo = (int)lroundf(tab[b * 32 + j] / (amax / 7)) + 8;
            int hi = (int)lroundf(tab[b * 32 + 16 + j] / (amax / 7)) + 8;
            q4[b * 18 + 2 + j] = (uint8_t)(std::clamp(lo, 0, 15) | std::clamp(hi, 0, 15) << 4);
        }
    }
    std::vector<uint16_t> f16((size_t)rows * K), bf16((size_t)rows * K);
    for (int i = 0; i < rows * K; i++) {
        f16[i] = syn_f32_to_f16(tab[i]);
        bf16[i] = syn_f32_to_bf16(tab[i]);
    }
    struct {
        int type;
        const void *data;
        int dt;
    } cases[] = {{SYN_DT_Q8_0, q8.data(), SYN_DT_F16},
                 {SYN_DT_Q4_0, q4.data(), SYN_DT_F16},
                 {SYN_DT_F16, f16.data(), SYN_DT_F32},
                 {SYN_DT_BF16, bf16.data(), SYN_DT_BF16},
                 {SYN_DT_F32, tab.data(), SYN_DT_BF16}};
    /* Q4_1, Q5_0, Q5_1 and the K-quants as tensor.c writes them (two super-blocks per row) */
    std::vector<float> tab2((size_t)rows * 512);
    for (auto &v : tab2) v = frand();
    static const int more[] = {SYN_DT_Q4_1, SYN_DT_Q5_0, SYN_DT_Q5_1,
                               SYN_DT_Q4_K, SYN_DT_Q5_K, SYN_DT_Q6_K};
    std::vector<std::vector<uint8_t>> enc;
    for (int t : more) {
        enc.emplace_back(tab2.size()); /* a byte per element: more than any of these takes */
        if (!syn_quantize_row(t, tab2.data(), enc.back().data(), tab2.size()))
            check("quantize for the convert test", 1, 0);
    }
    for (size_t k = 0; k < sizeof more / sizeof more[0]; k++) {
        const size_t n = tab2.size();
        std::vector<float> ref(n);
        syn_dequantize_row(more[k], enc[k].data(), ref.data(), n);
        std::vector<uint8_t> conv(n * 4);
        syn_cuda_convert(enc[k].data(), more[k], conv.data(), SYN_DT_F32, n, 0);
        char what[80];
        snprintf(what, sizeof what, "convert %s to f32", syn_dtype_name(more[k]));
        check(what, nmse(to_f32(conv.data(), SYN_DT_F32, n).data(), ref.data(), n), 1e-6);
    }
    for (auto &c : cases) {
        const size_t n = (size_t)rows * K;
        std::vector<float> ref(n);
        syn_dequantize_row(c.type, c.data, ref.data(), n);
        if (c.dt == SYN_DT_BF16)
            for (auto &v : ref) v = syn_bf16_to_f32(syn_f32_to_bf16(v));
        std::vector<uint8_t> conv(n * 4);
        syn_cuda_convert(c.data, c.type, conv.data(), c.dt, n, 0);
        char what[80];
        snprintf(what, sizeof what, "convert %s to %s", syn_dtype_name(c.type),
                 syn_dtype_name(c.dt));
        check(what, nmse(to_f32(conv.data(), c.dt, n).data(), ref.data(), n), 1e-6);
        int32_t tokens[4] = {5, 0, 3, 3};
        std::vector<float> x(4 * K), xr(4 * K);
        syn_cuda_embed(conv.data(), c.dt, K, tokens, 4, x.data(), 0);
        auto convf = to_f32(conv.data(), c.dt, n);
        for (int t = 0; t < 4; t++) memcpy(&xr[t * K], &convf[tokens[t] * K], K * 4);
        snprintf(what, sizeof what, "embed %s rows", syn_dtype_name(c.dt));
        check(what, nmse(x.data(), xr.data(), x.size()), 0);
    }
}

/* A paged pool: n_seqs sequences with shuffled block tables. */
struct pool {
    int bt, max_blocks, n_blocks;
    std::vector<int32_t> tables;
};

static pool make_pool(int n_seqs, int n_ctx, int bt)
{
    pool p;
    p.bt = bt;
    p.max_blocks = (n_ctx + bt - 1) / bt;
    p.n_blocks = n_seqs * p.max_blocks;
    p.tables.resize(p.n_blocks);
    for (int i = 0; i < p.n_blocks; i++) p.tables[i] = i;
    for (int i = p.n_blocks - 1; i > 0; i--)
        std::swap(p.tables[i], p.tables[(g_rng >> 7) % (i + 1)]), frand();
    return p;
}

static void test_rope(int neox, int bias)
{
    struct syn_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_head = 4;
    hp.n_kv_head = 2;
    hp.head_dim = 16;
    hp.rope_theta = 10000;
    hp.rope_neox = neox;
    const int hd = 16, half = 8, qd = 64, kvd = 32, w = qd + 2 * kvd, T = 5, n_ctx = 64;
    seed(3 + neox);
    pool p = make_pool(2, n_ctx, 8);
    auto qkv = rand_vec((size_t)T * w, 2), b = rand_vec(w, 0.5);
    int32_t pos[5] = {0, 1, 9, 40, 63}, seq[5] = {0, 0, 1, 1, 0};
    struct syn_model m;
    memset(&m, 0, sizeof m);
    m.hp = hp;
    std::vector<float> cs((size_t)n_ctx * half), sn((size_t)n_ctx * half);
    syn_rope_tables(&m, n_ctx, cs.data(), sn.data());
    const size_t kv_floats = (size_t)p.n_blocks * 2 * p.bt * kvd;
    std::vector<float> kv(kv_floats, 0), kvr(kv_floats, 0), qref((size_t)T * qd), got = qkv;
    for (int t = 0; t < T; t++) {
        std::vector<float> row(qkv.begin() + t * w, qkv.begin() + (t + 1) * w);
        if (bias)
            for (int i = 0; i < w; i++) row[i] += b[i];
        for (int h = 0; h < 6; h++)
            for (int i = 0; i < half; i++) {
                int ia = neox ? i : 2 * i, ib = neox ? i + half : 2 * i + 1;
                float *v = &row[h * hd], x0 = v[ia], x1 = v[ib];
                float c = (float)cos(pos[t] * pow(10000.0, -2.0 * i / hd));
                float s = (float)sin(pos[t] * pow(10000.0, -2.0 * i / hd));
                v[ia] = x0 * c - x1 * s;
                v[ib] = x0 * s + x1 * c;
            }
        memcpy(&qref[t * qd], row.data(), qd * 4);
        int32_t blk = p.tables[seq[t] * p.max_blocks + pos[t] / p.bt];
        float *slot = &kvr[((size_t)blk * 2 * p.bt + pos[t] % p.bt) * kvd];
        memcpy(slot, &row[qd], kvd * 4);
        memcpy(slot + p.bt * kvd, &row[qd + kvd], kvd * 4);
    }
    struct syn_cuda_rope r = {got.data(), w,   bias ? b.data() : NULL, cs.data(), sn.data(), 4, 2,
                              hd,         neox};
    struct syn_cuda_kv k = {kv.data(),    2 * (size_t)p.bt * kvd, 0,   p.bt,
                            p.max_blocks, p.tables.data(),        pos, seq};
    syn_cuda_rope_store(&r, &k, T, 0);
    std::vector<float> qgot((size_t)T * qd);
    for (int t = 0; t < T; t++) memcpy(&qgot[t * qd], &got[t * w], qd * 4);
    char what[80];
    snprintf(what, sizeof what, "rope q (%s, bias %d)", neox ? "halves" : "pairs", bias);
    check(what, nmse(qgot.data(), qref.data(), qref.size()), 1e-10);
    snprintf(what, sizeof what, "rope kv store (%s, bias %d)", neox ? "halves" : "pairs", bias);
    check(what, nmse(kv.data(), kvr.data(), kv_floats), 1e-10);
}

/* seq 0: 19 tokens from position 3; seq 1: one at 70; seq 2: 3 from 0; or pure decode */
static void test_attention(int n_head, int n_kv, int hd, int n_split, int decode, int dt)
{
    struct syn_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.n_head = n_head;
    hp.n_kv_head = n_kv;
    hp.head_dim = hd;
    const int n_ctx = 80, qd = n_head * hd, kvd = n_kv * hd, group = n_head / n_kv;
    std::vector<int32_t> pos, seq;
    if (decode) {
        int p[] = {0, 31, 32, 79};
        for (int i = 0; i < 4; i++) pos.push_back(p[i]), seq.push_back(i);
        pos.push_back(0), seq.push_back(-1); /* a padding token, as a graph bucket has */
    } else {
        for (int i = 0; i < 19; i++) pos.push_back(3 + i), seq.push_back(0);
        pos.push_back(70), seq.push_back(1);
        for (int i = 0; i < 3; i++) pos.push_back(i), seq.push_back(2);
    }
    const int T = (int)pos.size();
    seed(n_head * 100 + hd + n_split);
    pool p = make_pool(4, n_ctx, 16);
    auto kv = rand_vec((size_t)p.n_blocks * 2 * p.bt * kvd, 1.5);
    auto q = rand_vec((size_t)T * qd, 1.5);
    std::vector<float> ref((size_t)T * qd, 0);
    const float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < T; t++) {
        if (seq[t] < 0) continue;
        for (int h = 0; h < n_head; h++) {
            const int g = h / group;
            std::vector<double> att(pos[t] + 1);
            double mx = -INFINITY, sum = 0;
            auto kptr = [&](int j, int which) {
                int32_t blk = p.tables[seq[t] * p.max_blocks + j / p.bt];
                return &kv[((size_t)blk * 2 * p.bt + which * p.bt + j % p.bt) * kvd + g * hd];
            };
            for (int j = 0; j <= pos[t]; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++) d += (double)q[t * qd + h * hd + e] * kptr(j, 0)[e];
                att[j] = d * scale;
                mx = std::max(mx, att[j]);
            }
            for (auto &a : att) sum += (a = exp(a - mx));
            for (int e = 0; e < hd; e++) {
                double acc = 0;
                for (int j = 0; j <= pos[t]; j++) acc += att[j] / sum * kptr(j, 1)[e];
                ref[t * qd + h * hd + e] = (float)acc;
            }
        }
    }
    /* tiles and launch exactly as backend.cu (fill_inputs, choose_split's caps) does */
    int group_out = 0, tile_tokens = 0;
    if (syn_cuda_attention_shape(&hp, &group_out, &tile_tokens)) {
        check("attention shape supported", 1, 0);
        return;
    }
    std::vector<int2> tiles;
    int is_decode = 1;
    for (int t = 0; t < T; t++) {
        if (t > 0 && seq[t] >= 0 && seq[t] == seq[t - 1] && pos[t] == pos[t - 1] + 1 &&
            tiles.back().y < tile_tokens) {
            tiles.back().y++;
            is_decode = 0;
        } else {
            tiles.push_back({t, 1});
        }
    }
    std::vector<float> part((size_t)T * n_head * n_split * (hd + 2), NAN);
    std::vector<uint8_t> out((size_t)T * qd * 4);
    memset(out.data(), 0xff, out.size()); /* NaN: every element must be written */
    struct syn_cuda_kv k = {kv.data(),    2 * (size_t)p.bt * kvd, 0,          p.bt,
                            p.max_blocks, p.tables.data(),        pos.data(), seq.data()};
    struct syn_cuda_attn a;
    a.q = q.data();
    a.q_stride = qd;
    a.tiles = tiles.data();
    a.n_tiles = (int)tiles.size();
    a.max_rows = is_decode ? group : group * tile_tokens;
    a.n_head = n_head;
    a.n_kv_head = n_kv;
    a.head_dim = hd;
    a.scale = scale;
    a.out = out.data();
    a.dt = dt;
    a.n_split = n_split;
    a.part = part.data();
    a.T = T;
    syn_cuda_attention(&a, &k, 0);
    char what[100];
    snprintf(what, sizeof what, "attention %s %d/%d heads of %d, %d splits, as %s",
             decode ? "decode" : "prefill", n_head, n_kv, hd, n_split, syn_dtype_name(dt));
    check(what, nmse(to_f32(out.data(), dt, (size_t)T * qd).data(), ref.data(), ref.size()),
          dt == SYN_DT_F32 ? 1e-10 : 1e-4);
}

static void test_sample(void)
{
    const int nv = 3000, rows = 6;
    seed(9);
    auto logits = rand_vec((size_t)rows * nv, 6);
    for (int r = 0; r < rows; r++) logits[r * nv + (r * 37) % nv] = 9;
    logits[5] = logits[6] = 30; /* a tie in row 0 */
    /* a flat row: top-p keeps more than the sort's capacity, the id-order path */
    for (int i = 0; i < nv; i++) logits[5 * nv + i] = 0.001f * (float)(i % 7);
    std::vector<syn_sampling_params> cases(9, syn_sampling_default_params());
    cases[0].temperature = 0;
    cases[1].temperature = 1;
    cases[2].temperature = 0.8f, cases[2].top_k = 40;
    cases[3].temperature = 0.7f, cases[3].top_p = 0.9f;
    cases[4].temperature = 1, cases[4].min_p = 0.05f;
    cases[5].temperature = 0.9f, cases[5].top_k = 50, cases[5].top_p = 0.95f,
    cases[5].min_p = 0.01f;
    cases[6].temperature = 1.5f, cases[6].top_k = 1;
    cases[7].temperature = 2, cases[7].top_p = 0.5f;
    cases[8].temperature = 1, cases[8].top_k = 3000; /* top-k no smaller than the candidates */
    for (int i = 0; i < 6; i++) {                    /* and random mixtures of all four */
        syn_sampling_params c = syn_sampling_default_params();
        c.temperature = 0.2f + 1.6f * (frand() + 1) / 2;
        c.top_k = frand() > 0 ? (int)(1 + 400 * (frand() + 1) / 2) : 0;
        c.top_p = frand() > 0 ? 0.5f + 0.49f * (frand() + 1) / 2 : 1.0f;
        c.min_p = frand() > 0.3f ? 0.2f * (frand() + 1) / 2 : 0.0f;
        cases.push_back(c);
    }
    std::vector<float> work((size_t)rows * nv);
    for (size_t c = 0; c < cases.size(); c++)
        for (int draw = 0; draw < (c < 9 ? 3 : 1); draw++) {
            std::vector<syn_sample_spec> specs(rows);
            std::vector<int32_t> want(rows), got(rows, -7);
            for (int r = 0; r < rows; r++) {
                cases[c].seed = 1000 * c + 10 * r + draw;
                syn_sampler *a = syn_sampler_new(&cases[c], nv),
                            *b = syn_sampler_new(&cases[c], nv);
                syn_sampler_device_spec(a, &specs[r]);
                want[r] = syn_sampler_sample(b, &logits[(size_t)r * nv], NULL, NULL, 0);
                syn_sampler_free(a);
                syn_sampler_free(b);
            }
            if (getenv("EMU_VERBOSE"))
                fprintf(stderr, "sample case %zu draw %d: t %.2f k %d p %.3f m %.3f\n", c, draw,
                        (double)cases[c].temperature, cases[c].top_k, (double)cases[c].top_p,
                        (double)cases[c].min_p);
            syn_cuda_sample(logits.data(), rows, nv, specs.data(), work.data(), got.data(), 0);
            for (int r = 0; r < rows; r++) {
                if (r == 5 && cases[c].top_p < 1 && got[r] != want[r]) continue; /* id order */
                char what[100];
                snprintf(what, sizeof what,
                         "sample case %zu draw %d row %d (t %.2f k %d p %.3f m %.3f)", c, draw, r,
                         (double)cases[c].temperature, cases[c].top_k, (double)cases[c].top_p,
                         (double)cases[c].min_p);
                if (got[r] != want[r] || (c == 0 && draw == 0))
                    check_eq(what, got[r], want[r]);
                else
                    g_checks++;
            }
        }
}

int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    if (!*only || strstr("norm", only)) test_rmsnorm_swiglu();
    if (!*only || strstr("convert", only)) test_convert_embed();
    if (!*only || strstr("rope", only)) {
        test_rope(0, 0);
        test_rope(1, 1);
    }
    if (!*only || strstr("attention", only)) {
        emu_sms = 4; /* few "SMs", so that automatic splits would happen too */
        for (int decode = 0; decode <= 1; decode++) {
            test_attention(4, 2, 16, 1, decode, SYN_DT_F32);
            test_attention(4, 2, 16, 3, decode, SYN_DT_F32);
            test_attention(2, 2, 18, 1, decode, SYN_DT_F32);
            test_attention(2, 2, 18, 2, decode, SYN_DT_F32);
            test_attention(8, 4, 8, 1, decode, SYN_DT_F32);
            test_attention(16, 1, 40, 2, decode, SYN_DT_F32);
            test_attention(2, 1, 64, 1, decode, SYN_DT_BF16);
            test_attention(2, 2, 96, 4, decode, SYN_DT_F16);
        }
    }
    if (!*only || strstr("sample", only)) test_sample();
    printf("emu: %d checks, %d failed\n", g_checks, g_failed);
    return g_failed ? 1 : 0;
}
