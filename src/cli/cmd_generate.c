/*
 * `synapse generate`: one prompt on the command line, the generated text streamed to stdout.
 * The simplest client of the engine: one sequence, prefill in chunks of the step budget, then one
 * decode step per token. Also what the golden tests run.
 */
#include "cli.h"

#include "synapse/chat.h"
#include "synapse/engine.h"
#include "synapse/log.h"
#include "synapse/sampler.h"
#include "synapse/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: synapse generate -m MODEL [-p PROMPT] [-n N] [options]\n\n"
            "Generates text with a local model and streams it to stdout. An empty or absent\n"
            "prompt starts from BOS alone.\n\n"
            "Options:\n"
            "  -m, --model PATH        GGUF file or Hugging Face directory (required)\n"
            "  -p, --prompt TEXT       the prompt (default: empty)\n"
            "  -n, --max-tokens N      tokens to generate at most (default 256)\n"
            "      --temp T            temperature, 0 = greedy (default 1.0)\n"
            "      --top-k K           keep the K most likely tokens (default 0 = off)\n"
            "      --top-p P           nucleus sampling (default 1.0 = off)\n"
            "      --min-p P           drop tokens below P x the most likely (default 0 = off)\n"
            "      --repeat-penalty R  repetition penalty (default 1.0 = off)\n"
            "      --seed S            random seed (default 0)\n"
            "      --chat              treat the prompt as a user message in the chat template\n"
            "      --system TEXT       system message for --chat\n"
            "      --chat-template N   override the model's template, one of\n"
            "                          %s\n"
            "      --ignore-eos        keep generating past end-of-generation tokens\n"
            "  -t, --threads N         CPU threads (default: all)\n"
            "      --backend NAME      cpu or cuda (a CUDA=1 build; without a GPU it says so and\n"
            "                          runs on the CPU) (default: $SYNAPSE_BACKEND, else cpu)\n"
            "      --stats             print prompt/generation speed to stderr at the end\n"
            "  -h, --help              show this help\n",
            syn_chat_known_names());
}

int cmd_generate(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"prompt", required_argument, 0, 'p'},
                                         {"max-tokens", required_argument, 0, 'n'},
                                         {"temp", required_argument, 0, 'T'},
                                         {"top-k", required_argument, 0, 'k'},
                                         {"top-p", required_argument, 0, 'P'},
                                         {"min-p", required_argument, 0, 'M'},
                                         {"repeat-penalty", required_argument, 0, 'R'},
                                         {"seed", required_argument, 0, 's'},
                                         {"chat", no_argument, 0, 'c'},
                                         {"system", required_argument, 0, 'S'},
                                         {"chat-template", required_argument, 0, 'C'},
                                         {"ignore-eos", no_argument, 0, 'E'},
                                         {"threads", required_argument, 0, 't'},
                                         {"stats", no_argument, 0, 'x'},
                                         {"backend", required_argument, 0, 'B'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model = NULL, *prompt = "", *system = NULL, *tmpl = NULL, *backend = NULL;
    long n_gen = 256, threads = 0, top_k = 0, seed = 0;
    double temp = 1.0, top_p = 1.0, min_p = 0.0, rep = 1.0;
    int chat = 0, ignore_eos = 0, stats = 0, c;
    const char *cmd = "generate";
    while ((c = cli_getopt(cmd, argc, argv, "m:p:n:t:h", opts)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'p':
            prompt = optarg;
            break;
        case 'n':
            if (cli_parse_long(cmd, "--max-tokens", optarg, 0, 1 << 20, &n_gen)) return 2;
            break;
        case 'T':
            if (cli_parse_double(cmd, "--temp", optarg, 0, 100, &temp)) return 2;
            break;
        case 'k':
            if (cli_parse_long(cmd, "--top-k", optarg, 0, 1 << 24, &top_k)) return 2;
            break;
        case 'P':
            if (cli_parse_double(cmd, "--top-p", optarg, 1e-9, 1, &top_p)) return 2;
            break;
        case 'M':
            if (cli_parse_double(cmd, "--min-p", optarg, 0, 1, &min_p)) return 2;
            break;
        case 'R':
            if (cli_parse_double(cmd, "--repeat-penalty", optarg, 1e-6, 10, &rep)) return 2;
            break;
        case 's':
            if (cli_parse_long(cmd, "--seed", optarg, 0, 0x7fffffffffffffffL, &seed)) return 2;
            break;
        case 'c':
            chat = 1;
            break;
        case 'S':
            system = optarg;
            break;
        case 'C':
            tmpl = optarg;
            break;
        case 'E':
            ignore_eos = 1;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &threads)) return 2;
            break;
        case 'x':
            stats = 1;
            break;
        case 'B':
            backend = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!model) return cli_usage_error(cmd, "--model is required");

    int rc = 1;
    char err[512];
    struct syn_engine *e = NULL;
    struct syn_sampler *smp = NULL;
    int32_t *ids = NULL;
    char *text = NULL;
    struct syn_engine_params ep = syn_engine_default_params();
    ep.model_path = model;
    ep.n_threads = (int)threads;
    ep.max_seqs = 1;
    if (backend) ep.backend = backend;
    if (syn_engine_load(&ep, &e, err, sizeof err) < 0) {
        fprintf(stderr, "synapse generate: %s\n", err);
        goto out;
    }
    const struct syn_tokenizer *tok = syn_engine_tokenizer(e);
    const int n_vocab = syn_engine_hparams(e)->n_vocab;

    /* the prompt text: as given, or rendered through the chat template */
    const char *ptext = prompt;
    int add_bos = 1, special = 0;
    if (chat) {
        const char *jt = syn_engine_chat_template(e);
        int id = syn_chat_resolve(tmpl, jt, jt ? strlen(jt) : 0, err, sizeof err);
        if (id < 0) {
            fprintf(stderr, "synapse generate: %s\n", err);
            goto out;
        }
        struct syn_chat_msg msgs[2];
        int nm = 0;
        if (system) msgs[nm++] = (struct syn_chat_msg){"system", system};
        msgs[nm++] = (struct syn_chat_msg){"user", prompt};
        int32_t bos = syn_tokenizer_bos(tok), eos = syn_tokenizer_eos(tok);
        const char *bos_s = bos >= 0 ? syn_tokenizer_piece(tok, bos) : "";
        const char *eos_s = eos >= 0 ? syn_tokenizer_piece(tok, eos) : "";
        int need = syn_chat_apply(id, msgs, nm, 1, bos_s, eos_s, NULL, 0, err, sizeof err);
        if (need < 0 || !(text = malloc((size_t)need + 1))) {
            fprintf(stderr, "synapse generate: chat template '%s': %s\n", syn_chat_name(id),
                    need < 0 ? err : "out of memory");
            goto out;
        }
        syn_chat_apply(id, msgs, nm, 1, bos_s, eos_s, text, (size_t)need + 1, err, sizeof err);
        ptext = text;
        special = 1;
        add_bos = !syn_chat_has_bos(id);
    }
    if (!syn_tokenizer_add_bos(tok) && !chat) add_bos = 0;
    int n_prompt = syn_tokenizer_encode(tok, ptext, strlen(ptext), add_bos, special, NULL, 0);
    if (n_prompt < 0) {
        fprintf(stderr, "synapse generate: cannot tokenize the prompt: %s\n",
                syn_strerror(n_prompt));
        goto out;
    }
    if (n_prompt == 0) { /* a vocabulary without BOS and an empty prompt: nothing to go on */
        fprintf(stderr, "synapse generate: the prompt is empty and the model has no BOS token\n");
        goto out;
    }
    if ((long)n_prompt + n_gen > syn_engine_n_ctx(e)) {
        n_gen = syn_engine_n_ctx(e) - n_prompt;
        if (n_gen < 0) {
            fprintf(stderr, "synapse generate: the prompt has %d tokens, the context only %d\n",
                    n_prompt, syn_engine_n_ctx(e));
            goto out;
        }
    }
    ids = malloc(sizeof *ids * (size_t)(n_prompt + 1));
    if (!ids) goto out;
    syn_tokenizer_encode(tok, ptext, strlen(ptext), add_bos, special, ids, n_prompt);

    struct syn_sampling_params sp = syn_sampling_default_params();
    sp.temperature = (float)temp;
    sp.top_k = (int)top_k;
    sp.top_p = (float)top_p;
    sp.min_p = (float)min_p;
    sp.repetition_penalty = (float)rep;
    sp.seed = (uint64_t)seed;
    smp = syn_sampler_new(&sp, n_vocab);
    if (!smp) goto out;
    for (int i = 0; i < n_prompt; i++) syn_sampler_accept(smp, ids[i], 1);

    int seq = syn_engine_seq_new(e);
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* prefill in chunks of the step budget; logits only for the last chunk */
    const int chunk = syn_engine_max_batch_tokens(e);
    for (int done = 0; done < n_prompt; done += chunk) {
        int n = n_prompt - done < chunk ? n_prompt - done : chunk;
        struct syn_step_item it = {seq, ids + done, n,
                                   done + n == n_prompt ? SYN_LOGITS_LAST : SYN_LOGITS_NONE};
        int src = syn_engine_step(e, &it, 1);
        if (src < 0) {
            fprintf(stderr, "synapse generate: prefill failed: %s\n", syn_strerror(src));
            goto out;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct syn_detok dt;
    syn_detok_init(&dt);
    /* Generated text continues a text prompt, so its first piece keeps its leading space; a
     * reply to a chat turn or a start from BOS alone begins fresh (SentencePiece drops it). */
    if (!chat && n_prompt > add_bos) dt.n_tokens = 1;
    char piece[512];
    int n_out = 0;
    for (; n_out < n_gen; n_out++) {
        int32_t next = syn_sampler_sample(smp, syn_engine_logits(e, 0), NULL, NULL, 0);
        if (!ignore_eos && syn_tokenizer_is_eog(tok, next)) break;
        syn_sampler_accept(smp, next, 0);
        int len = syn_detok_push(tok, &dt, next, piece, sizeof piece);
        if (len > 0) {
            fwrite(piece, 1, (size_t)len, stdout);
            fflush(stdout);
        }
        if (n_out + 1 == n_gen) {
            n_out++;
            break;
        }
        struct syn_step_item it = {seq, &next, 1, SYN_LOGITS_LAST};
        int src = syn_engine_step(e, &it, 1);
        if (src < 0) {
            fprintf(stderr, "\nsynapse generate: decode failed: %s\n", syn_strerror(src));
            goto out;
        }
    }
    int len = syn_detok_flush(tok, &dt, piece, sizeof piece);
    if (len > 0) fwrite(piece, 1, (size_t)len, stdout);
    printf("\n");
    fflush(stdout);
    clock_gettime(CLOCK_MONOTONIC, &t2);
    if (stats) {
        double pf = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
        double dc = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) * 1e-9;
        fprintf(stderr,
                "prompt: %d tokens in %.3f s (%.1f tokens/s); generated: %d tokens in "
                "%.3f s (%.1f tokens/s)\n",
                n_prompt, pf, n_prompt / (pf > 0 ? pf : 1e-9), n_out, dc,
                n_out / (dc > 0 ? dc : 1e-9));
    }
    rc = 0;
out:
    free(ids);
    free(text);
    syn_sampler_free(smp);
    syn_engine_free(e);
    return rc;
}
