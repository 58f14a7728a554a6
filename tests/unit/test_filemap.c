/*
 * A file in memory both ways (common/filemap.h): the same bytes mapped and resident, the resident
 * copy on a 2 MiB boundary and read-only, clear errors for an empty file and a failed read, and
 * the engine's weights mode: both modes give the same logits, an unknown mode is refused.
 */
#include "common/filemap.h"
#include "harness.h"
#include "synapse/engine.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>

/* Writes n pseudo-random bytes to a new file in the test's directory; returns its path. */
static const char *random_file(const char *name, size_t n, uint8_t **bytes)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", syn_test_tmpdir(), name);
    uint8_t *b = malloc(n);
    CHECK(b);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[i] = (uint8_t)x;
    }
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    fclose(f);
    *bytes = b;
    return path;
}

TEST(filemap_resident_and_mapped_hold_the_same_bytes)
{
    /* more than four huge pages (so several readers share it) and not a multiple of one */
    const size_t n = ((size_t)9 << 20) + 12345;
    uint8_t *want;
    const char *path = random_file("blob", n, &want);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    char err[256];
    for (int mode = SYN_FILEMAP_MAPPED; mode <= SYN_FILEMAP_RESIDENT; mode++) {
        struct syn_filemap m;
        CHECK_EQ_INT(
            syn_filemap_open(fd, path, n, (enum syn_filemap_mode)mode, &m, err, sizeof err), 0);
        CHECK_EQ_INT(m.size, n);
        CHECK(memcmp(m.data, want, n) == 0);
        if (mode == SYN_FILEMAP_RESIDENT) {
            CHECK_EQ_INT((uintptr_t)m.data % ((uintptr_t)2 << 20), 0);
            CHECK(m.region_len >= n && m.region_len % ((size_t)2 << 20) == 0);
            /* read-only: a write is a fault, in a child so that the test survives it */
            pid_t pid = fork();
            if (pid == 0) {
                ((volatile uint8_t *)m.region)[0] = 1;
                _exit(0);
            }
            int st;
            waitpid(pid, &st, 0);
            /* SIGSEGV; under ASan (abort_on_error) its report ends in SIGABRT */
            CHECK(WIFSIGNALED(st) && (WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGABRT));
        }
        syn_filemap_release(&m);
        CHECK(m.region == NULL);
        syn_filemap_release(&m); /* harmless twice */
    }
    /* an empty file, and a file shorter than the size asked for: errors naming the file */
    struct syn_filemap m;
    CHECK(syn_filemap_open(fd, path, 0, SYN_FILEMAP_RESIDENT, &m, err, sizeof err) < 0);
    CHECK(strstr(err, "blob") && strstr(err, "empty"));
    CHECK(syn_filemap_open(fd, path, n + ((size_t)4 << 20), SYN_FILEMAP_RESIDENT, &m, err,
                           sizeof err) < 0);
    CHECK(strstr(err, "cannot read") && strstr(err, "shrank"));
    CHECK(m.region == NULL);
    close(fd);
    free(want);
}

/* Logits of one prompt with the weights loaded as mode says. */
static float *logits_with(const char *weights, int *n_vocab)
{
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = syn_test_shared("models/stories260K.gguf");
    p.n_threads = 1;
    p.weights = weights;
    char err[512];
    struct syn_engine *e;
    if (syn_engine_load(&p, &e, err, sizeof err)) FAIL("load (%s): %s", weights, err);
    int32_t toks[] = {1, 403, 407, 261, 378};
    int seq = syn_engine_seq_new(e);
    struct syn_step_item it = {seq, toks, 5, SYN_LOGITS_LAST};
    CHECK_EQ_INT(syn_engine_step(e, &it, 1), 0);
    *n_vocab = syn_engine_hparams(e)->n_vocab;
    float *out = malloc(sizeof *out * (size_t)*n_vocab);
    CHECK(out);
    memcpy(out, syn_engine_logits(e, 0), sizeof *out * (size_t)*n_vocab);
    syn_engine_free(e);
    return out;
}

TEST(engine_weights_resident_and_mapped_agree)
{
    int nv1, nv2;
    float *a = logits_with("resident", &nv1), *b = logits_with("mapped", &nv2);
    CHECK_EQ_INT(nv1, nv2);
    CHECK(memcmp(a, b, sizeof *a * (size_t)nv1) == 0);
    free(a);
    free(b);
    struct syn_engine_params p = syn_engine_default_params();
    p.model_path = syn_test_shared("models/stories260K.gguf");
    p.weights = "swapped";
    char err[256];
    struct syn_engine *e;
    CHECK_EQ_INT(syn_engine_load(&p, &e, err, sizeof err), SYN_EINVAL);
    CHECK(strstr(err, "swapped") && strstr(err, "resident"));
    /* the commands: a bad --weights is a usage error; SYNAPSE_WEIGHTS picks the mode */
    char *out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out,
                             "%s worker --model %s --redis unix:///nonexistent --weights x 2>&1",
                             syn_test_bin(), syn_test_shared("models/stories260K.gguf")),
                 2);
    CHECK(out && strstr(out, "--weights expects resident or mapped"));
    free(out);
    out = NULL;
    CHECK_EQ_INT(syn_test_sh(&out, "SYNAPSE_WEIGHTS=mapped %s generate -m %s --temp 0 -n 8 2>&1",
                             syn_test_bin(), syn_test_shared("models/stories260K.gguf")),
                 0);
    free(out);
    out = NULL;
    CHECK(syn_test_sh(&out, "SYNAPSE_WEIGHTS=bogus %s generate -m %s -n 1 2>&1", syn_test_bin(),
                      syn_test_shared("models/stories260K.gguf")) != 0);
    CHECK(out && strstr(out, "bogus"));
    free(out);
}
