/*
 * The whole CUDA backend (backend.cu + kernels.cu) on the emulator, through the engine's public
 * API, against the CPU backend: for each model on the command line, three sequences prefill with
 * every position's logits, then decode in lock-step (a graph bucket: eager, captured, replayed),
 * then a mixed prefill + decode step; then greedy tokens picked by syn_engine_sample on the
 * device. Run by tests/cuda/run-emu.sh engine MODEL:TOL ...
 */
#include "cuda_runtime.h"

extern "C" {
#include "synapse/engine.h"
#include "synapse/sampler.h"
}

#include "../check_util.h" /* nmse */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failed;

static syn_engine *load(const char *model, const char *backend)
{
    syn_engine_params p = syn_engine_default_params();
    p.model_path = model;
    p.backend = backend;
    p.max_seqs = 4;
    p.max_batch_tokens = 64;
    p.max_logit_rows = 64;
    p.n_ctx = 96;
    syn_engine *e = NULL;
    char err[512];
    if (syn_engine_load(&p, &e, err, sizeof err) < 0) {
        printf("FAIL load %s on %s: %s\n", model, backend, err);
        exit(1);
    }
    if (strcmp(syn_engine_backend_name(e), backend)) {
        printf("FAIL %s: asked for %s, got %s\n", model, backend, syn_engine_backend_name(e));
        exit(1);
    }
    return e;
}

static void compare(const char *model, double tol)
{
    syn_engine *c = load(model, "cpu"), *g = load(model, "cuda");
    const int nv = syn_engine_hparams(c)->n_vocab;
    int sc[3], sg[3];
    for (int i = 0; i < 3; i++) sc[i] = syn_engine_seq_new(c), sg[i] = syn_engine_seq_new(g);
    int32_t prompt[3][20];
    const int len[3] = {1, 5, 20};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < len[i]; k++) prompt[i][k] = k == 0 ? 1 : (k * 37 + i * 11) % nv;
    int32_t next[3];
    double worst = 0;
    const long launches0 = emu_graph_launches;
    for (int step = 0; step < 7; step++) {
        syn_step_item ic[3], ig[3];
        for (int i = 0; i < 3; i++) {
            if (step == 0)
                ic[i] = {sc[i], prompt[i], len[i], SYN_LOGITS_ALL};
            else if (step == 6 && i == 0)
                ic[i] = {sc[i], prompt[2], 9, SYN_LOGITS_ALL};
            else
                ic[i] = {sc[i], &next[i], 1, SYN_LOGITS_LAST};
            ig[i] = ic[i];
            ig[i].seq = sg[i];
        }
        if (syn_engine_step(c, ic, 3) || syn_engine_step(g, ig, 3)) {
            printf("FAIL %s: step %d failed\n", model, step);
            g_failed++;
            return;
        }
        const int rows = syn_engine_n_logits(c);
        double e = 0;
        for (int r = 0; r < rows; r++) {
            double x = nmse(syn_engine_logits(g, r), syn_engine_logits(c, r), (size_t)nv);
            if (!(x <= e)) e = x;
        }
        if (!(e <= tol)) {
            printf("FAIL %s: step %d logits nmse %.3g > %.0e\n", model, step, e, tol);
            g_failed++;
        }
        if (e > worst) worst = e;
        int r = 0;
        for (int i = 0; i < 3; i++) {
            r += ic[i].logits == SYN_LOGITS_ALL ? ic[i].n_tokens : 1;
            const float *lg = syn_engine_logits(c, r - 1);
            int best = 0;
            for (int v = 1; v < nv; v++)
                if (lg[v] > lg[best]) best = v;
            next[i] = best;
        }
    }
    printf(
        "%s %s: worst logits nmse %.3g over 7 steps (tolerance %.0e); decode graph replays %ld\n",
        worst <= tol ? "ok  " : "FAIL", model, worst, tol, emu_graph_launches - launches0);
    if (emu_graph_launches == launches0) {
        printf("FAIL %s: no decode step replayed a graph\n", model);
        g_failed++;
    }
    /* greedy on the device against the CPU's argmax, one sequence */
    syn_sampling_params sp = syn_sampling_default_params();
    sp.temperature = 0;
    syn_sampler *smp = syn_sampler_new(&sp, nv);
    int a = syn_engine_seq_new(c), b = syn_engine_seq_new(g);
    int32_t tc = 1, tg = 1, bad = 0;
    for (int n = 0; n < 12 && !bad; n++) {
        syn_step_item i1 = {a, &tc, 1, SYN_LOGITS_LAST}, i2 = {b, &tg, 1, SYN_LOGITS_LAST};
        if (syn_engine_step(c, &i1, 1) || syn_engine_step(g, &i2, 1)) bad = 1;
        tc = syn_sampler_sample(smp, syn_engine_logits(c, 0), NULL, NULL, 0);
        if (syn_engine_sample(g, &smp, 1, &tg) || tg != tc) bad = 1;
    }
    printf("%s %s: 12 greedy tokens sampled on the device %s the CPU's\n", bad ? "FAIL" : "ok  ",
           model, bad ? "differ from" : "equal");
    g_failed += bad;
    syn_sampler_free(smp);
    syn_engine_free(c);
    syn_engine_free(g);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", argv[i]);
        char *colon = strrchr(buf, ':');
        double tol = colon ? atof(colon + 1) : 1e-8;
        if (colon) *colon = 0;
        compare(buf, tol);
    }
    printf("emu engine: %d failed\n", g_failed);
    return g_failed ? 1 : 0;
}
