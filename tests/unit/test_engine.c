/*
 * The engine on the real stories260K model: the published greedy output reproduced in full, the
 * published perplexity, batch invariance (bit for bit), seeded determinism, and the paged KV
 * cache's bookkeeping and errors.
 */
#include "engine/cpu/kernels.h"
#include "harness.h"
#include "synapse/engine.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"

#include <math.h>

static struct syn_engine *load(const char *path, int max_seqs, int max_batch)
{
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = path;
    p.max_seqs = max_seqs;
    p.max_batch_tokens = max_batch;
    p.n_threads = 2;
    char err[512];
    struct syn_engine *e;
    int rc = syn_engine_load(&p, &e, err, sizeof err);
    if (rc) FAIL("load %s: %s", path, err);
    return e;
}

static const char *stories(void)
{
    return syn_test_shared("models/stories260K.gguf");
}

/* The code block after the "-t 0.0" command in llama2.c's doc: the greedy output. */
static char *published_greedy(void)
{
    char *doc = syn_test_read_file(
        syn_test_shared("testdata/stories260K/llama2c_doc_stories260K.md"), NULL);
    CHECK(doc);
    char *cmd = strstr(doc, "-t 0.0\n");
    CHECK(cmd);
    char *start = cmd + strlen("-t 0.0\n");
    char *end = strstr(start, "\n```");
    CHECK(end);
    *end = 0;
    char *out = strdup(start);
    free(doc);
    return out;
}

TEST(engine_stories260k_greedy_matches_published_output)
{
    char *want = published_greedy();
    char *got = NULL;
    /* llama2.c's 256 steps: BOS at position 0 and 256 forward passes, each printing one token */
    int rc = syn_test_sh(&got, "%s generate -m %s --temp 0 -n 256 --ignore-eos", syn_test_bin(),
                         stories());
    CHECK_EQ_INT(rc, 0);
    /* both end where the text ends; compare without trailing whitespace */
    for (char *s = got + strlen(got); s > got && (s[-1] == '\n' || s[-1] == ' ');) *--s = 0;
    CHECK_EQ_STR(got, want);
    free(got);
    free(want);
}

TEST(engine_stories260k_perplexity_matches_golden)
{
    char *json = syn_test_read_file(
        syn_test_shared("testdata/stories260K/esp32-llm_golden_ppl_fp32.json"), NULL);
    CHECK(json);
    char sentence[256];
    double nll_want, ppl_want, tol;
    int n_want;
    CHECK(sscanf(strstr(json, "\"sentence\""), "\"sentence\": \"%255[^\"]\"", sentence) == 1);
    CHECK(sscanf(strstr(json, "\"n_tokens\""), "\"n_tokens\": %d", &n_want) == 1);
    CHECK(sscanf(strstr(json, "\"nll\""), "\"nll\": %lf", &nll_want) == 1);
    CHECK(sscanf(strstr(json, "\"perplexity\""), "\"perplexity\": %lf", &ppl_want) == 1);
    CHECK(sscanf(strstr(json, "\"tolerance\""), "\"tolerance\": %lf", &tol) == 1);
    free(json);
    char *out = NULL;
    int rc = syn_test_sh(&out, "printf '%%s' '%s' | %s model perplexity %s", sentence,
                         syn_test_bin(), stories());
    CHECK_EQ_INT(rc, 0);
    int n;
    double nll, ppl;
    CHECK(sscanf(out, "tokens: %d\nnll: %lf\nperplexity: %lf", &n, &nll, &ppl) == 3);
    CHECK_EQ_INT(n, n_want);
    CHECK_NEAR(ppl, ppl_want, tol);
    CHECK_NEAR(nll / (n - 1), nll_want / (n_want - 1), tol);
    free(out);
}

/* Runs `seq`'s prompt alone, then decodes a few greedy tokens; returns the last logits row. */
static void run_alone(const char *model, const int32_t *prompt, int n, int steps, float *out)
{
    struct syn_engine *e = load(model, 1, 512);
    int s = syn_engine_seq_new(e);
    struct syn_step_item it = {s, prompt, n, SYN_LOGITS_LAST};
    CHECK_EQ_INT(syn_engine_step(e, &it, 1), 0);
    int nv = syn_engine_hparams(e)->n_vocab;
    for (int k = 0; k < steps; k++) {
        const float *l = syn_engine_logits(e, 0);
        int32_t best = 0;
        for (int i = 1; i < nv; i++)
            if (l[i] > l[best]) best = i;
        struct syn_step_item d = {s, &best, 1, SYN_LOGITS_LAST};
        CHECK_EQ_INT(syn_engine_step(e, &d, 1), 0);
    }
    memcpy(out, syn_engine_logits(e, 0), sizeof(float) * (size_t)nv);
    syn_engine_free(e);
}

/* The same sequence inside batches of up to 64 others at various positions, prefilling and
 * decoding alongside it: its logits must be bitwise equal to the solo run's. */
static void check_batch_invariance(const char *model)
{
    const int32_t prompt[] = {1, 403, 407, 261, 378, 324, 270, 442, 268};
    const int n = sizeof prompt / sizeof prompt[0], steps = 4;
    struct syn_engine *e = load(model, 65, 2048);
    int nv = syn_engine_hparams(e)->n_vocab;
    float *solo = malloc(sizeof(float) * (size_t)nv);
    run_alone(model, prompt, n, steps, solo);

    for (int others = 0; others <= 64; others += others < 4 ? 1 : 20) {
        int seqs[65];
        int32_t toks[65][24];
        /* others get prompts of different lengths, some already advanced */
        for (int o = 0; o < others; o++) {
            seqs[o] = syn_engine_seq_new(e);
            CHECK(seqs[o] >= 0);
            int len = 1 + (o * 7) % 23;
            for (int k = 0; k < len; k++) toks[o][k] = (int32_t)((o * 31 + k * 17) % (nv - 3) + 3);
            if (o % 3 == 0) {
                struct syn_step_item pre = {seqs[o], toks[o], len, SYN_LOGITS_NONE};
                CHECK_EQ_INT(syn_engine_step(e, &pre, 1), 0);
            }
        }
        int me = syn_engine_seq_new(e);
        struct syn_step_item items[66];
        int ni = 0;
        for (int o = 0; o < others; o++) {
            int len = 1 + (o * 7) % 23;
            items[ni++] =
                (struct syn_step_item){seqs[o], toks[o], o % 3 == 0 ? 1 : len, SYN_LOGITS_LAST};
        }
        /* put our sequence in the middle of the batch */
        int mid = ni / 2;
        memmove(items + mid + 1, items + mid, sizeof items[0] * (size_t)(ni - mid));
        items[mid] = (struct syn_step_item){me, prompt, n, SYN_LOGITS_LAST};
        ni++;
        CHECK_EQ_INT(syn_engine_step(e, items, ni), 0);
        for (int k = 0; k < steps; k++) {
            const float *l = syn_engine_logits(e, mid);
            int32_t best = 0;
            for (int i = 1; i < nv; i++)
                if (l[i] > l[best]) best = i;
            int32_t next[66];
            for (int i = 0; i < ni; i++) {
                const float *li = syn_engine_logits(e, i);
                next[i] = i == mid ? best : (int32_t)(li[0] > li[1] ? 5 : 6);
                items[i].tokens = &next[i];
                items[i].n_tokens = 1;
            }
            CHECK_EQ_INT(syn_engine_step(e, items, ni), 0);
        }
        if (memcmp(syn_engine_logits(e, mid), solo, sizeof(float) * (size_t)nv) != 0)
            FAIL("logits differ with %d other sequences in the batch", others);
        for (int o = 0; o < others; o++) syn_engine_seq_free(e, seqs[o]);
        syn_engine_seq_free(e, me);
        CHECK_EQ_INT(syn_engine_kv_blocks_free(e), syn_engine_kv_blocks_total(e));
    }
    free(solo);
    syn_engine_free(e);
}

TEST(engine_batch_invariance_stories260k)
{
    check_batch_invariance(stories());
}

TEST(engine_batch_invariance_other_dtypes)
{
    /* q4_K_M mixes Q4_K and Q6_K matrices (three layers: the third has Q6_K attn_v and
     * ffn_down, so q, k and v take two roads); the K-quants need rows of 256. */
    const char *types[] = {"f16", "bf16", "q8_0", "q4_K_M", "q5_K", "q5_1"};
    for (int i = 0; i < 6; i++) {
        char path[700];
        const int k = i == 3 || i == 4;
        snprintf(path, sizeof path, "%s/m-%s.gguf", syn_test_tmpdir(), types[i]);
        int rc =
            syn_test_sh(NULL,
                        "%s model random --dim %d --layers %d --heads 4 --kv-heads 2 "
                        "--ffn %d --vocab 512 --dtype %s --seed 7 -o %s >/dev/null",
                        syn_test_bin(), k ? 256 : 128, k ? 3 : 2, k ? 512 : 256, types[i], path);
        if (rc != 0) FAIL("model random --dtype %s failed (%d)", types[i], rc);
        check_batch_invariance(path);
    }
}

TEST(engine_seeded_generation_is_deterministic)
{
    char *a = NULL, *b = NULL, *c = NULL;
    const char *fmt = "%s generate -m %s --temp 1 --top-p 0.9 --seed %d -n 60 -p 'Once upon'";
    CHECK_EQ_INT(syn_test_sh(&a, fmt, syn_test_bin(), stories(), 133742), 0);
    CHECK_EQ_INT(syn_test_sh(&b, fmt, syn_test_bin(), stories(), 133742), 0);
    CHECK_EQ_INT(syn_test_sh(&c, fmt, syn_test_bin(), stories(), 7), 0);
    CHECK_EQ_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK(strncmp(a, "Once upon", 0) == 0);
    free(a);
    free(b);
    free(c);
}

TEST(engine_kv_blocks_and_errors)
{
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = stories();
    p.max_seqs = 4;
    p.max_batch_tokens = 64;
    p.kv_block_tokens = 16;
    p.n_ctx = 128;
    /* room for 5 blocks */
    p.kv_cache_bytes = 5 * 16 * (size_t)(2 * 5 * 4 * 8) * sizeof(float);
    char err[256];
    struct syn_engine *e;
    CHECK_EQ_INT(syn_engine_load(&p, &e, err, sizeof err), 0);
    CHECK_EQ_INT(syn_engine_kv_blocks_total(e), 5);
    int a = syn_engine_seq_new(e), b = syn_engine_seq_new(e);
    int32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = 1 + i % 300;
    struct syn_step_item it = {a, toks, 40, SYN_LOGITS_LAST}; /* 3 blocks */
    CHECK_EQ_INT(syn_engine_step(e, &it, 1), 0);
    CHECK_EQ_INT(syn_engine_kv_blocks_free(e), 2);
    CHECK_EQ_INT(syn_engine_seq_len(e, a), 40);
    /* 3 more blocks do not fit: nothing changes */
    struct syn_step_item it2 = {b, toks, 33, SYN_LOGITS_LAST};
    CHECK_EQ_INT(syn_engine_step(e, &it2, 1), SYN_ENOSPC);
    CHECK_EQ_INT(syn_engine_kv_blocks_free(e), 2);
    CHECK_EQ_INT(syn_engine_seq_len(e, b), 0);
    /* a bad token, a repeated sequence, an unknown one */
    int32_t bad = 100000;
    struct syn_step_item it3 = {b, &bad, 1, SYN_LOGITS_LAST};
    CHECK_EQ_INT(syn_engine_step(e, &it3, 1), SYN_ERANGE);
    struct syn_step_item two[2] = {{a, toks, 1, 1}, {a, toks, 1, 1}};
    CHECK_EQ_INT(syn_engine_step(e, two, 2), SYN_EINVAL);
    struct syn_step_item unk = {3, toks, 1, 1};
    CHECK_EQ_INT(syn_engine_step(e, &unk, 1), SYN_EINVAL);
    /* truncation frees whole blocks past the new end; freeing returns the rest */
    CHECK_EQ_INT(syn_engine_seq_truncate(e, a, 16), 0);
    CHECK_EQ_INT(syn_engine_kv_blocks_free(e), 4);
    syn_engine_seq_free(e, a);
    CHECK_EQ_INT(syn_engine_kv_blocks_free(e), 5);
    /* positions past n_ctx */
    for (int k = 0; k < 2; k++) {
        struct syn_step_item fill = {b, toks, 64, SYN_LOGITS_NONE};
        CHECK_EQ_INT(syn_engine_step(e, &fill, 1), k == 0 ? 0 : SYN_ENOSPC);
    }
    syn_engine_seq_free(e, b);
    syn_engine_free(e);
}

TEST(engine_load_errors_are_clear)
{
    struct syn_engine_params p = syn_engine_default_params();
    char err[512];
    struct syn_engine *e;
    p.model_path = "/nonexistent/model.gguf";
    CHECK_EQ_INT(syn_engine_load(&p, &e, err, sizeof err), SYN_EIO);
    CHECK(strstr(err, "/nonexistent/model.gguf"));
    char path[700];
    snprintf(path, sizeof path, "%s/empty.gguf", syn_test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("not a model", f);
    fclose(f);
    p.model_path = path;
    CHECK(syn_engine_load(&p, &e, err, sizeof err) < 0);
    CHECK(strlen(err) > 0);
    p.model_path = stories();
    p.backend = "tpu";
    CHECK_EQ_INT(syn_engine_load(&p, &e, err, sizeof err), SYN_EUNSUPPORTED);
    CHECK(strstr(err, "tpu"));
}

/* `bench engine --context N` decodes after N tokens of context per sequence: the figure where
 * attention counts. It reports the context in its JSON, and a decode at a long context is
 * slower than from one token (stories260K: 1 MB of weights and 260 K multiply-adds a token; at
 * 1,000 positions its attention reads 2.5 MB of K and V and does 640 K multiply-adds). */
TEST(bench_engine_decodes_after_a_context)
{
    char *out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out,
                             "%s bench engine -m %s --batch 1,2 --gen 4 --reps 1 -t 1 --context "
                             "1000 --json",
                             syn_test_bin(), stories()),
                 0);
    CHECK(out && strstr(out, "\"decode_context\":1000,"));
    CHECK(out && strstr(out, "{\"batch\":2,\"tokens_per_s\":"));
    const char *d = out ? strstr(out, "{\"batch\":1,\"tokens_per_s\":") : NULL;
    double far = d ? atof(d + strlen("{\"batch\":1,\"tokens_per_s\":")) : 0;
    free(out);
    out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out, "%s bench engine -m %s --batch 1 --gen 4 --reps 1 -t 1 --json",
                             syn_test_bin(), stories()),
                 0);
    CHECK(out && strstr(out, "\"decode_context\":0,"));
    d = out ? strstr(out, "{\"batch\":1,\"tokens_per_s\":") : NULL;
    double near = d ? atof(d + strlen("{\"batch\":1,\"tokens_per_s\":")) : 0;
    free(out);
    CHECK(far > 0 && near > 0);
    CHECK(far < near);
    out = NULL;
    CHECK_EQ_INT(
        syn_test_sh(&out, "%s bench engine -m %s --context -1 2>&1", syn_test_bin(), stories()), 2);
    CHECK(out && strstr(out, "--context"));
    free(out);
}

/* The AVX-512 attention path (heads sharing a K/V head done together, queries and outputs in
 * registers) and the generic one (a dot and an axpy per head and position) give the same logits
 * bit for bit, over head sizes with 1 to 8 vectors of 16 and K/V groups of 1, 2, 3, 4 and 8
 * (runs of heads split 2 + 1, 2 + 2, or taken 4 at once), in prefill and in a batched decode at
 * three positions. */
TEST(engine_attention_paths_agree_bitwise)
{
    if (strcmp(syn_cpu_kernels_isa(), "avx512") != 0) SKIP("no AVX-512: one attention path only");
    static const char *const shapes[] = {
        "--dim 96 --heads 2 --kv-heads 1",                /* head_dim 48, group 2 */
        "--dim 256 --heads 4",                            /* 64, no GQA */
        "--dim 256 --heads 8 --kv-heads 1",               /* 32, group 8: four heads at once */
        "--dim 240 --heads 3 --kv-heads 1",               /* 80, group 3: 2 + 1 */
        "--dim 512 --heads 4 --kv-heads 1",               /* 128, group 4: 2 + 2 */
        "--dim 128 --heads 8 --kv-heads 4",               /* 16, group 2 */
        "--dim 192 --heads 4 --kv-heads 2 --head-dim 40", /* 40: not a multiple of 16 */
    };
    for (size_t m = 0; m < sizeof shapes / sizeof shapes[0]; m++) {
        char path[700], *out = NULL;
        snprintf(path, sizeof path, "%s/att%zu.gguf", syn_test_tmpdir(), m);
        if (syn_test_sh(&out, "%s model random %s --layers 2 --vocab 300 --dtype f32 -o %s 2>&1",
                        syn_test_bin(), shapes[m], path) != 0)
            FAIL("model random %s: %s", shapes[m], out ? out : "");
        free(out);
        float *logits[2] = {NULL, NULL};
        size_t n = 0;
        for (int generic = 0; generic < 2; generic++) {
            syn_cpu_attention_force_generic(generic);
            struct syn_engine_params p = syn_engine_default_params();
            p.model_path = path;
            p.n_threads = 2;
            p.max_seqs = 3;
            p.max_logit_rows = 3;
            p.max_batch_tokens = 64;
            p.n_ctx = 256;
            char err[512];
            struct syn_engine *e = NULL;
            CHECK_EQ_INT(syn_engine_load(&p, &e, err, sizeof err), 0);
            if (!e) FAIL("%s: %s", shapes[m], err);
            const int nv = syn_engine_hparams(e)->n_vocab;
            int seq[3];
            int32_t toks[200];
            for (int s = 0; s < 3; s++) {
                seq[s] = syn_engine_seq_new(e);
                int len = 60 + 50 * s; /* three positions */
                for (int k = 0; k < len; k++)
                    toks[k] = (int32_t)(1 + (k * 37 + s * 101) % (nv - 1));
                for (int k = 0; k < len; k += 64) {
                    int c = len - k < 64 ? len - k : 64;
                    struct syn_step_item it = {seq[s], toks + k, c, SYN_LOGITS_NONE};
                    CHECK_EQ_INT(syn_engine_step(e, &it, 1), 0);
                }
            }
            int32_t next[3] = {5, 6, 7};
            struct syn_step_item items[3];
            for (int s = 0; s < 3; s++)
                items[s] = (struct syn_step_item){seq[s], &next[s], 1, SYN_LOGITS_LAST};
            CHECK_EQ_INT(syn_engine_step(e, items, 3), 0);
            n = (size_t)nv;
            logits[generic] = malloc(3 * n * sizeof(float));
            for (int s = 0; s < 3; s++)
                memcpy(logits[generic] + s * n, syn_engine_logits(e, s), n * sizeof(float));
            syn_engine_free(e);
        }
        syn_cpu_attention_force_generic(0);
        if (memcmp(logits[0], logits[1], 3 * n * sizeof(float)) != 0)
            FAIL("%s: the two attention paths differ", shapes[m]);
        free(logits[0]);
        free(logits[1]);
    }
}
