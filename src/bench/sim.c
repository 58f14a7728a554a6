/*
 * The pool simulator (sim.h). A binary heap of timed events (arrivals, pool ticks, workers
 * becoming ready, heartbeats, step ends, idle exits) processed in time order; ties go in the
 * order they were scheduled, so a run is deterministic. The policy is not reimplemented here:
 * every tick calls syn_autoscale_decide() from src/gateway/autoscale.c.
 */
#include "bench/sim.h"

#include "bench/stats.h"
#include "synapse/error.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the service-time model ---- */

struct syn_sim_model syn_sim_default_model(void)
{
    /* round figures of the order `synapse bench engine -t 1` gives for the stories15m shape,
     * F16; for tests and for runs without --model-json */
    struct syn_sim_model m = {
        .decode = {4, {1, 4, 16, 32}, {1.0 / 1000, 4.0 / 2500, 16.0 / 3500, 32.0 / 3500}},
        .prefill = {2, {64, 256}, {64.0 / 7000, 256.0 / 5000}},
        .step_overhead_s = 0.0005,
        .hop_s = 0.002,
        .cold_start_s = 0.3,
        .max_batched_tokens = 256,
        .threads = 1,
    };
    return m;
}

static void add_point(struct syn_sim_curve *c, double x, double y)
{
    if (!(x > 0) || !(y > 0)) return;
    for (int i = 0; i < c->n; i++)
        if (c->x[i] == x) { /* measured twice: the mean */
            c->y[i] = 0.5 * (c->y[i] + y);
            return;
        }
    if (c->n >= SYN_SIM_MAX_POINTS) return;
    int i = c->n++;
    while (i > 0 && c->x[i - 1] > x) {
        c->x[i] = c->x[i - 1];
        c->y[i] = c->y[i - 1];
        i--;
    }
    c->x[i] = x;
    c->y[i] = y;
}

/* Adds the points of one `bench engine --json` object; with fresh, also takes its cold start
 * and threads. */
static int model_json(const char *text, struct syn_sim_model *m, int fresh, char *err,
                      size_t errlen)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    int rc = SYN_OK;
    if (!json_is_object(root)) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "sim: expected the JSON object of `synapse bench engine --json`: %s "
                        "(line %d)",
                        je.text, je.line);
        goto out;
    }
    int before = m->decode.n + m->prefill.n;
    json_t *dec = json_object_get(root, "decode");
    size_t i;
    json_t *row;
    json_array_foreach(dec, i, row)
    {
        double b = json_number_value(json_object_get(row, "batch"));
        double tps = json_number_value(json_object_get(row, "tokens_per_s"));
        if (b > 0 && tps > 0) add_point(&m->decode, b, b / tps);
    }
    double pt = json_number_value(json_object_get(root, "prompt_tokens"));
    double ptps = json_number_value(json_object_get(root, "prefill_tokens_per_s"));
    if (pt > 0 && ptps > 0) add_point(&m->prefill, pt, pt / ptps);
    if (m->decode.n < 1 || m->prefill.n < 1 || m->decode.n + m->prefill.n == before) {
        rc = syn_seterr(err, errlen, SYN_EFORMAT,
                        "sim: the engine benchmark needs decode[].batch/tokens_per_s and "
                        "prompt_tokens/prefill_tokens_per_s; found %d decode and %d prefill "
                        "points",
                        m->decode.n, m->prefill.n);
        goto out;
    }
    if (fresh) {
        double first = json_number_value(json_object_get(root, "first_token_s"));
        if (first > 0) m->cold_start_s = first;
        int th = (int)json_integer_value(json_object_get(root, "threads"));
        if (th > 0) m->threads = th;
        double su = json_number_value(json_object_get(root, "sample_us_per_row"));
        if (su > 0) m->sample_s_per_row = su / 1e6;
    }
out:
    json_decref(root);
    return rc;
}

int syn_sim_model_from_json(const char *text, struct syn_sim_model *m, char *err, size_t errlen)
{
    *m = syn_sim_default_model();
    m->decode.n = m->prefill.n = 0;
    return model_json(text, m, 1, err, errlen);
}

int syn_sim_model_add_json(const char *text, struct syn_sim_model *m, char *err, size_t errlen)
{
    return model_json(text, m, 0, err, errlen);
}

/* The curve at x: linear between points, through the origin below the first, along the last
 * segment above the last, and never below a point to its left. */
static double curve_at(const struct syn_sim_curve *c, double x)
{
    if (c->n == 0 || x <= 0) return 0;
    double best = 0, y;
    int i = 0;
    while (i < c->n && c->x[i] < x) best = c->y[i] > best ? c->y[i] : best, i++;
    if (i == 0) {
        y = c->y[0] * x / c->x[0];
    } else if (i < c->n) {
        y = c->y[i - 1] + (c->y[i] - c->y[i - 1]) * (x - c->x[i - 1]) / (c->x[i] - c->x[i - 1]);
    } else if (c->n >= 2) {
        double sl = (c->y[c->n - 1] - c->y[c->n - 2]) / (c->x[c->n - 1] - c->x[c->n - 2]);
        if (sl < c->y[c->n - 1] / c->x[c->n - 1]) sl = c->y[c->n - 1] / c->x[c->n - 1];
        y = c->y[c->n - 1] + sl * (x - c->x[c->n - 1]);
    } else {
        y = c->y[0] * x / c->x[0];
    }
    return y > best ? y : best;
}

double syn_sim_step_time(const struct syn_sim_model *m, int decode_rows, int prefill_rows)
{
    if (decode_rows <= 0 && prefill_rows <= 0) return 0;
    /* one pass over the weights: a decode step of one */
    double w = m->decode.n ? curve_at(&m->decode, 1) : 0;
    const struct syn_sim_curve *pc = m->prefill.n ? &m->prefill : &m->decode;
    const struct syn_sim_curve *dc = m->decode.n ? &m->decode : &m->prefill;
    double d = curve_at(dc, decode_rows), p = curve_at(pc, prefill_rows);
    double t = d + p;
    if (decode_rows > 0 && prefill_rows > 0) {
        /* d + p - min(w, d, p), written so that the smallest term cancels exactly */
        if (p <= w && p <= d)
            t = d;
        else if (d <= w && d <= p)
            t = p;
        else
            t = d + (p - w);
    }
    return t > w ? t : w;
}

/* ---- policies ---- */

int syn_sim_policy_parse(const char *spec, const struct syn_scale_policy *base,
                         struct syn_sim_policy *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", spec);
    out->scale = *base;
    char kind[32];
    double a = -1, b = -1;
    const char *colon = strchr(spec, ':');
    size_t kl = colon ? (size_t)(colon - spec) : strlen(spec);
    if (kl == 0 || kl >= sizeof kind) goto bad;
    memcpy(kind, spec, kl);
    kind[kl] = 0;
    if (colon) {
        char *end;
        a = strtod(colon + 1, &end);
        if (end == colon + 1) goto bad;
        if (*end == ':') {
            const char *s2 = end + 1;
            b = strtod(s2, &end);
            if (end == s2) goto bad;
        }
        if (*end) goto bad;
    }
    if (!strcmp(kind, "always-on")) {
        if (a < 1 || a != floor(a) || b >= 0) goto bad;
        out->scale.min_warm = out->scale.max_workers = (int)a;
    } else if (!strcmp(kind, "scale-to-zero")) {
        if (a < 0 || b >= 0) goto bad;
        out->scale.min_warm = 0;
        out->scale.idle_timeout_s = a;
    } else if (!strcmp(kind, "min-warm") || !strcmp(kind, "predictive")) {
        if (a < 0 || a != floor(a) || b < 0) goto bad;
        out->scale.min_warm = (int)a;
        out->scale.idle_timeout_s = b;
        out->predictive = kind[0] == 'p';
    } else {
        goto bad;
    }
    if (out->scale.max_workers < out->scale.min_warm) out->scale.max_workers = out->scale.min_warm;
    return SYN_OK;
bad:
    return syn_seterr(err, errlen, SYN_EINVAL,
                      "sim: policy '%s' is not one of always-on:N, scale-to-zero:T, "
                      "min-warm:K:T, predictive:K:T",
                      spec);
}

struct syn_sim_params syn_sim_default_params(void)
{
    struct syn_sim_params p = {
        .model = syn_sim_default_model(),
        .tick_s = 0.2,
        .heartbeat_s = 1.0,
        .slo_ttft_s = 0.2,
        .slo_tpot_s = 0.05,
        .corun_slowdown = 1,
    };
    p.policy.scale = syn_scale_default_policy();
    snprintf(p.policy.name, sizeof p.policy.name, "default");
    return p;
}

/* ---- events ---- */

enum ev_type { EV_ARRIVAL, EV_TICK, EV_READY, EV_HEARTBEAT, EV_STEP_END, EV_IDLE_EXIT };

struct ev {
    double t;
    uint64_t seq; /* scheduling order, for ties */
    int type;
    int a;        /* request or worker index */
    uint64_t gen; /* for ticks and idle exits: which schedule this is */
};

struct heap {
    struct ev *v; /* (cap) from realloc */
    size_t n, cap;
    uint64_t seq;
};

static int ev_less(const struct ev *x, const struct ev *y)
{
    return x->t < y->t || (x->t == y->t && x->seq < y->seq);
}

static int heap_push(struct heap *h, double t, int type, int a, uint64_t gen)
{
    if (h->n == h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 256;
        struct ev *nv = realloc(h->v, nc * sizeof *nv);
        if (!nv) return -1;
        h->v = nv;
        h->cap = nc;
    }
    struct ev e = {t, h->seq++, type, a, gen};
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_less(&e, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = e;
    return 0;
}

static struct ev heap_pop(struct heap *h)
{
    struct ev top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct ev *best = &last;
        if (l < h->n && ev_less(&h->v[l], best)) m = l, best = &h->v[l];
        if (r < h->n && ev_less(&h->v[r], best)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

/* ---- the pool ---- */

enum { W_STARTING, W_READY, W_EXITED, W_GONE };

struct item {
    int req;    /* request index */
    int take;   /* tokens in this step */
    int decode; /* a decode token (else a prefill chunk) */
};

struct worker {
    int state;
    int warm;       /* started as one of min_warm: no idle timeout */
    double spawn_t; /* paid from here (0 for the initial warm ones) */
    int *seqs;      /* (max_seqs) running requests, in admission order */
    int n_seqs;
    struct item *items; /* (max_seqs) the step in flight */
    int n_items;
    int in_step;
    /* the step in flight: its work left in seconds at full speed, and the speed since rate_t
     * (below 1 while it shares the machine, 0 until reshare schedules it); its end event must
     * match step_gen */
    double work_left, rate, rate_t;
    uint64_t step_gen;
    uint64_t idle_gen;       /* bumped whenever it gets work; an idle exit must match */
    int draining;            /* told to drain (a surplus): claims nothing, exits when empty */
    int hb_running, hb_free; /* what its last heartbeat said */
};

struct sreq {
    int prefilled, generated;
    double admit_t, first_t, done_t;
    int done;
};

struct sim {
    const struct syn_sim_params *p;
    const struct syn_trace *t;
    struct syn_sim_result *r;
    struct heap h;
    struct worker *w; /* (cap_w) */
    int n_w, cap_w;
    int slots;
    struct sreq *rq; /* (n) */
    int *queue;      /* (n) FIFO of request indices */
    size_t q_head, q_tail;
    size_t completed, arrived;
    uint64_t tick_gen;
    int poked, last_ready; /* the pool's "ready" as of its last tick */
    double rate, last_rate_t;
    size_t arrivals_at_last_tick;
    int started_this_tick;
    double service_ewma;  /* mean slot-holding time of finished requests */
    double surplus_since; /* start of the current surplus (more alive than needed); -1 */
    double last_event_t;
    size_t cap_ticks;
    uint64_t rng; /* splitmix64 state, from params.phase_seed */
};

/* The delay to a periodic event's first occurrence: a whole period, or with a phase seed a
 * uniform draw in (0, period]. */
static double first_in(struct sim *s, double period)
{
    if (!s->p->phase_seed) return period;
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return period * ((double)((z >> 11) + 1) / 9007199254740992.0); /* (0, 1] x period */
}

/* Workers using their cores now: in a step, or starting (reading weights, warming up). */
static int busy_workers(const struct sim *s)
{
    int b = 0;
    for (int i = 0; i < s->n_w; i++) b += s->w[i].in_step || s->w[i].state == W_STARTING;
    return b;
}

static int reshare(struct sim *s, double now);

static int spawn(struct sim *s, double now, int warm, int ready_now)
{
    if (s->n_w == s->cap_w) {
        int nc = s->cap_w ? s->cap_w * 2 : 8;
        struct worker *nw = realloc(s->w, (size_t)nc * sizeof *nw);
        if (!nw) return -1;
        s->w = nw;
        s->cap_w = nc;
    }
    struct worker *w = &s->w[s->n_w];
    memset(w, 0, sizeof *w);
    w->seqs = calloc((size_t)s->slots, sizeof *w->seqs);
    w->items = calloc((size_t)s->slots, sizeof *w->items);
    if (!w->seqs || !w->items) {
        free(w->seqs);
        free(w->items);
        return -1;
    }
    int id = s->n_w++;
    w->warm = warm;
    w->spawn_t = now;
    w->state = W_STARTING;
    if (ready_now) {
        w->state = W_READY;
        w->hb_free = s->slots;
        if (heap_push(&s->h, now + first_in(s, s->p->heartbeat_s), EV_HEARTBEAT, id, 0)) return -1;
    } else {
        if (heap_push(&s->h, now + s->p->model.cold_start_s, EV_READY, id, 0)) return -1;
        if (reshare(s, now)) return -1; /* a starting worker takes a core */
    }
    return id;
}

/* How much slower than alone a step runs while `busy` workers use the machine (its own
 * included): the co-run slowdown in proportion to the other cores in use, and time-slicing
 * beyond the cores. */
static double slowdown(const struct sim *s, int busy)
{
    const double cores = s->p->cpu_cores, own = s->p->model.threads > 0 ? s->p->model.threads : 1;
    const double threads = busy * own;
    double f = 1;
    if (s->p->corun_slowdown > 1 && cores > own) {
        double others = (threads < cores ? threads : cores) - own;
        if (others > 0) f *= 1 + (s->p->corun_slowdown - 1) * others / (cores - own);
    }
    if (threads > cores) f *= threads / cores;
    return f;
}

/* With cpu_cores: the workers share the machine, so whenever one starts or ends a step, or
 * starts or becomes ready, every step in flight goes on at the speed the new count allows.
 * A step whose speed changed (or that has none yet: rate 0, just started) has its work done
 * so far booked at the old speed and its end scheduled again (the old end event no longer
 * matches step_gen). */
static int reshare(struct sim *s, double now)
{
    if (s->p->cpu_cores <= 0) return 0;
    const double rate = 1 / slowdown(s, busy_workers(s));
    for (int i = 0; i < s->n_w; i++) {
        struct worker *w = &s->w[i];
        if (!w->in_step || w->rate == rate) continue;
        w->work_left -= (now - w->rate_t) * w->rate;
        if (w->work_left < 0) w->work_left = 0;
        w->rate = rate;
        w->rate_t = now;
        if (heap_push(&s->h, now + w->work_left / rate, EV_STEP_END, i, ++w->step_gen)) return -1;
    }
    return 0;
}

/* Starts a step on worker id if it has sequences; otherwise it goes idle. */
static int start_step(struct sim *s, int id, double now)
{
    struct worker *w = &s->w[id];
    const struct syn_sim_model *m = &s->p->model;
    int budget = m->max_batched_tokens > 0 ? m->max_batched_tokens : 256, n_dec = 0, n_pre = 0;
    int n_rows = 0; /* rows sampled: decode rows and prompts that end here */
    w->n_items = 0;
    /* decode tokens first, then prefill chunks with what budget is left (worker.c step()) */
    for (int pass = 0; pass < 2 && budget > 0; pass++)
        for (int k = 0; k < w->n_seqs && budget > 0; k++) {
            int ri = w->seqs[k];
            struct sreq *q = &s->rq[ri];
            int prompt = s->t->reqs[ri].prompt_tokens;
            int decoding = q->prefilled == prompt;
            if (pass == 0 && !decoding) continue;
            if (pass == 1 && decoding) continue;
            int take =
                pass == 0 ? 1 : (prompt - q->prefilled < budget ? prompt - q->prefilled : budget);
            w->items[w->n_items++] = (struct item){ri, take, pass == 0};
            budget -= take;
            if (pass == 0)
                n_dec += take;
            else
                n_pre += take;
            n_rows += pass == 0 || q->prefilled + take == prompt;
        }
    if (w->n_items == 0) {
        w->in_step = 0;
        w->idle_gen++;
        if (w->draining) {
            w->state = W_EXITED;
            return 0;
        }
        if (!w->warm && s->p->policy.scale.idle_timeout_s > 0)
            return heap_push(&s->h, now + s->p->policy.scale.idle_timeout_s, EV_IDLE_EXIT, id,
                             w->idle_gen);
        return 0;
    }
    w->in_step = 1;
    w->work_left =
        syn_sim_step_time(m, n_dec, n_pre) + m->step_overhead_s + m->sample_s_per_row * n_rows;
    w->rate_t = now;
    if (s->p->cpu_cores > 0) {
        w->rate = 0; /* not scheduled yet: reshare does it */
        return reshare(s, now);
    }
    w->rate = 1;
    return heap_push(&s->h, now + w->work_left, EV_STEP_END, id, ++w->step_gen);
}

/* Worker id takes queued jobs into its free slots. Returns how many it took. */
static int claim(struct sim *s, int id, double now)
{
    struct worker *w = &s->w[id];
    int took = 0;
    while (!w->draining && w->n_seqs < s->slots && s->q_head < s->q_tail) {
        int ri = s->queue[s->q_head++];
        s->rq[ri].admit_t = now;
        w->seqs[w->n_seqs++] = ri;
        took++;
    }
    if (took) w->idle_gen++;
    return took;
}

/* Hands queued jobs to idle ready workers (in index order). */
static int dispatch_idle(struct sim *s, double now)
{
    for (int i = 0; i < s->n_w && s->q_head < s->q_tail; i++) {
        struct worker *w = &s->w[i];
        if (w->state != W_READY || w->in_step || w->draining) continue;
        if (claim(s, i, now) && start_step(s, i, now)) return -1;
    }
    return 0;
}

static int on_step_end(struct sim *s, int id, double now)
{
    struct worker *w = &s->w[id];
    for (int k = 0; k < w->n_items; k++) {
        struct item *it = &w->items[k];
        struct sreq *q = &s->rq[it->req];
        const struct syn_trace_req *tr = &s->t->reqs[it->req];
        if (it->decode) {
            q->generated++;
        } else {
            q->prefilled += it->take;
            if (q->prefilled == tr->prompt_tokens) {
                q->generated = 1;
                q->first_t = now;
            }
        }
        if (q->generated >= tr->output_tokens && !q->done) {
            q->done = 1;
            q->done_t = now;
            s->completed++;
            double held = now - q->admit_t;
            s->service_ewma = s->service_ewma > 0 ? 0.9 * s->service_ewma + 0.1 * held : held;
        }
    }
    int n = 0;
    for (int k = 0; k < w->n_seqs; k++)
        if (!s->rq[w->seqs[k]].done) w->seqs[n++] = w->seqs[k];
    w->n_seqs = n;
    w->in_step = 0;
    claim(s, id, now);
    return start_step(s, id, now);
}

static int record_tick(struct sim *s, double now, int alive, int starting, int running, int waiting,
                       int arrivals, int started)
{
    struct syn_sim_result *r = s->r;
    if (r->n_ticks == s->cap_ticks) {
        size_t nc = s->cap_ticks ? s->cap_ticks * 2 : 1024;
        struct syn_sim_tick *nt = realloc(r->ticks, nc * sizeof *nt);
        if (!nt) return -1;
        r->ticks = nt;
        s->cap_ticks = nc;
    }
    r->ticks[r->n_ticks++] =
        (struct syn_sim_tick){now, alive, starting, running, waiting, arrivals, started};
    return 0;
}

/* A mean service time for the predictive policy before any request has finished: a prompt's
 * prefill plus its output at a full batch. */
static double service_prior(const struct sim *s)
{
    double P = 0, O = 0;
    size_t n = s->t->n;
    for (size_t i = 0; i < n; i++) {
        P += s->t->reqs[i].prompt_tokens;
        O += s->t->reqs[i].output_tokens;
    }
    if (n == 0) return 0;
    P /= (double)n;
    O /= (double)n;
    const struct syn_sim_model *m = &s->p->model;
    return syn_sim_step_time(m, 0, (int)P) +
           O * (syn_sim_step_time(m, s->slots, 0) + m->step_overhead_s +
                m->sample_s_per_row * s->slots);
}

static int on_tick(struct sim *s, double now)
{
    const struct syn_sim_params *p = s->p;
    /* reap workers that exited since the last tick: they are paid for until now */
    for (int i = 0; i < s->n_w; i++)
        if (s->w[i].state == W_EXITED) {
            s->w[i].state = W_GONE;
            s->r->worker_seconds += now - s->w[i].spawn_t;
        }
    struct syn_scale_state st = {0};
    int ready = 0, warm = 0, running_now = 0;
    for (int i = 0; i < s->n_w; i++) {
        const struct worker *w = &s->w[i];
        if (w->state == W_READY && !w->draining) {
            st.alive++;
            ready++;
            st.running += w->hb_running;
            st.free_slots += w->hb_free;
            running_now += w->n_seqs;
        } else if (w->state == W_STARTING) {
            st.starting++;
        }
        if ((w->state == W_READY || w->state == W_STARTING) && w->warm) warm++;
    }
    st.waiting = (int64_t)(s->q_tail - s->q_head);
    if (s->last_rate_t >= 0 && now > s->last_rate_t) {
        double inst = (double)(s->arrived - s->arrivals_at_last_tick) / (now - s->last_rate_t);
        s->rate = 0.7 * s->rate + 0.3 * inst;
    }
    int arrivals = (int)(s->arrived - s->arrivals_at_last_tick);
    s->arrivals_at_last_tick = s->arrived;
    s->last_rate_t = now;
    st.arrival_rate = s->rate;
    if (p->policy.predictive)
        st.mean_service_s = s->service_ewma > 0 ? s->service_ewma : service_prior(s);
    st.surplus_s = syn_scale_surplus_s(s->surplus_since, now);
    struct syn_scale_decision d = syn_autoscale_decide(&p->policy.scale, &st);
    s->surplus_since = syn_scale_surplus_next(s->surplus_since, &d, st.alive, now);
    if (d.stop > 0) { /* workpool.c's drain_candidate: beyond min_warm, fewest running */
        int best = -1;
        for (int i = 0; i < s->n_w; i++) {
            const struct worker *w = &s->w[i];
            if (w->state != W_READY || w->warm || w->draining) continue;
            if (best < 0 || w->hb_running < s->w[best].hb_running) best = i;
        }
        if (best >= 0) {
            struct worker *w = &s->w[best];
            w->draining = 1;
            s->r->workers_drained++;
            if (!w->in_step) w->state = W_EXITED; /* nothing running: it exits at once */
        }
    }
    for (int i = 0; i < d.start; i++) {
        int is_warm = warm < p->policy.scale.min_warm;
        if (spawn(s, now, is_warm, 0) < 0) return -1;
        warm += is_warm;
        s->r->workers_started++;
    }
    s->last_ready = ready;
    s->poked = 0;
    if (p->timeline && record_tick(s, now, st.alive, st.starting + d.start, running_now,
                                   (int)st.waiting, arrivals, d.start))
        return -1;
    int total = 0;
    for (int i = 0; i < s->n_w; i++)
        total += s->w[i].state == W_READY || s->w[i].state == W_STARTING;
    if (total > s->r->peak_workers) s->r->peak_workers = total;
    return heap_push(&s->h, now + p->tick_s, EV_TICK, 0, ++s->tick_gen);
}

/* Done when every request finished and no worker that costs money by the trace's doing is
 * still around (warm workers stay: they are paid to the end). */
static int finished(const struct sim *s)
{
    if (s->completed < s->t->n || s->arrived < s->t->n) return 0;
    for (int i = 0; i < s->n_w; i++) {
        const struct worker *w = &s->w[i];
        if (w->state == W_STARTING || w->state == W_EXITED) return 0;
        if (w->state == W_READY && !w->warm && s->p->policy.scale.idle_timeout_s > 0) return 0;
    }
    return 1;
}

int syn_sim_run(const struct syn_sim_params *p, struct syn_sim_result **out, char *err,
                size_t errlen)
{
    *out = NULL;
    const struct syn_trace *t = p->trace;
    if (!t) return syn_seterr(err, errlen, SYN_EINVAL, "sim: no trace");
    if (p->model.decode.n + p->model.prefill.n < 1)
        return syn_seterr(err, errlen, SYN_EINVAL, "sim: the service model has no points");
    struct sim s;
    memset(&s, 0, sizeof s);
    s.p = p;
    s.t = t;
    s.slots = p->policy.scale.slots_per_worker > 0 ? p->policy.scale.slots_per_worker : 1;
    s.last_rate_t = -1;
    s.surplus_since = -1;
    s.last_ready = p->policy.scale.min_warm;
    s.rng = p->phase_seed;
    int rc = SYN_ENOMEM;
    size_t n = t->n;
    struct syn_sim_result *r = calloc(1, sizeof *r);
    s.r = r;
    if (!r) goto out;
    r->n = n;
    s.rq = calloc(n ? n : 1, sizeof *s.rq);
    s.queue = calloc(n ? n : 1, sizeof *s.queue);
    r->ttft = calloc(n ? n : 1, sizeof *r->ttft);
    r->tpot = calloc(n ? n : 1, sizeof *r->tpot);
    r->e2e = calloc(n ? n : 1, sizeof *r->e2e);
    if (!s.rq || !s.queue || !r->ttft || !r->tpot || !r->e2e) goto out;
    for (size_t i = 0; i < n; i++) {
        r->prompt_tokens += (uint64_t)t->reqs[i].prompt_tokens;
        r->output_tokens += (uint64_t)t->reqs[i].output_tokens;
        /* arrivals are pushed lazily, one ahead, to keep the heap small */
    }
    /* min_warm workers are up before the trace starts */
    for (int i = 0; i < p->policy.scale.min_warm; i++)
        if (spawn(&s, 0, 1, 1) < 0) goto out;
    if (n && heap_push(&s.h, t->reqs[0].t, EV_ARRIVAL, 0, 0)) goto out;
    if (heap_push(&s.h, p->phase_seed ? first_in(&s, p->tick_s) : 0, EV_TICK, 0, ++s.tick_gen))
        goto out;
    double now = 0, end_limit = t->span_s + 1e6;
    while (s.h.n > 0 && !finished(&s)) {
        struct ev e = heap_pop(&s.h);
        now = e.t;
        if (now > end_limit) break;
        int bad = 0;
        switch (e.type) {
        case EV_ARRIVAL: {
            s.queue[s.q_tail++] = e.a;
            s.arrived++;
            int ready_now = 0;
            for (int i = 0; i < s.n_w; i++) ready_now += s.w[i].state == W_READY;
            if (!ready_now) r->waited_cold++;
            if ((size_t)e.a + 1 < n)
                bad |= heap_push(&s.h, t->reqs[e.a + 1].t, EV_ARRIVAL, e.a + 1, 0);
            /* syn_workpool_poke: nothing ready at the last tick -> a tick now */
            if (s.last_ready == 0 && !s.poked) {
                s.poked = 1;
                bad |= heap_push(&s.h, now, EV_TICK, 0, ++s.tick_gen);
            }
            bad |= dispatch_idle(&s, now);
            break;
        }
        case EV_TICK:
            if (e.gen == s.tick_gen) bad |= on_tick(&s, now);
            break;
        case EV_READY: {
            struct worker *w = &s.w[e.a];
            w->state = W_READY;
            bad |= reshare(&s, now); /* its start no longer takes a core */
            w->hb_running = 0;
            w->hb_free = s.slots;
            bad |= heap_push(&s.h, now + first_in(&s, p->heartbeat_s), EV_HEARTBEAT, e.a, 0);
            claim(&s, e.a, now);
            bad |= start_step(&s, e.a, now); /* with nothing claimed its idle timer starts */
            break;
        }
        case EV_HEARTBEAT: {
            struct worker *w = &s.w[e.a];
            if (w->state != W_READY) break;
            w->hb_running = w->n_seqs;
            w->hb_free = s.slots - w->n_seqs;
            bad |= heap_push(&s.h, now + p->heartbeat_s, EV_HEARTBEAT, e.a, 0);
            break;
        }
        case EV_STEP_END:
            if (e.gen != s.w[e.a].step_gen || !s.w[e.a].in_step) break; /* rescheduled */
            bad |= on_step_end(&s, e.a, now);
            bad |= reshare(&s, now); /* its core is free, or busy again */
            break;
        case EV_IDLE_EXIT: {
            struct worker *w = &s.w[e.a];
            if (w->state == W_READY && !w->in_step && w->n_seqs == 0 && w->idle_gen == e.gen)
                w->state = W_EXITED;
            break;
        }
        }
        if (bad) goto out;
        s.last_event_t = now;
    }
    /* the end: the last arrival or completion */
    double end = n ? t->reqs[n - 1].t : 0;
    for (size_t i = 0; i < n; i++)
        if (s.rq[i].done && s.rq[i].done_t > end) end = s.rq[i].done_t;
    r->end_s = end;
    /* workers still up: warm ones (and any that never time out) are paid to the end; a burst
     * worker still up past the end (only when stopped by end_limit) to now */
    for (int i = 0; i < s.n_w; i++) {
        struct worker *w = &s.w[i];
        if (w->state == W_GONE) continue;
        double until = w->state == W_EXITED ? now : (now > end ? now : end);
        if (w->warm || s.p->policy.scale.idle_timeout_s <= 0) until = end;
        if (until > w->spawn_t) r->worker_seconds += until - w->spawn_t;
    }
    r->cost = r->worker_seconds * p->price_per_hour / 3600.0;
    uint64_t tok = r->prompt_tokens + r->output_tokens;
    r->cost_per_mtok = tok ? r->cost / (double)tok * 1e6 : 0;
    r->cost_per_mtok_out = r->output_tokens ? r->cost / (double)r->output_tokens * 1e6 : 0;
    /* per request */
    size_t good = 0, k = 0, kt = 0;
    double *tt = malloc((n ? n : 1) * sizeof *tt), *tp = malloc((n ? n : 1) * sizeof *tp),
           *ee = malloc((n ? n : 1) * sizeof *ee);
    if (!tt || !tp || !ee) {
        free(tt);
        free(tp);
        free(ee);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sreq *q = &s.rq[i];
        double a = t->reqs[i].t;
        int o = t->reqs[i].output_tokens;
        r->ttft[i] = r->tpot[i] = r->e2e[i] = -1;
        if (!q->done) continue;
        r->completed++;
        r->ttft[i] = q->first_t + p->model.hop_s - a;
        r->e2e[i] = q->done_t + p->model.hop_s - a;
        if (o >= 2) r->tpot[i] = (r->e2e[i] - r->ttft[i]) / (o - 1);
        tt[k] = r->ttft[i];
        ee[k++] = r->e2e[i];
        if (r->tpot[i] >= 0) tp[kt++] = r->tpot[i];
        if (r->ttft[i] <= p->slo_ttft_s && (r->tpot[i] < 0 || r->tpot[i] <= p->slo_tpot_s)) good++;
    }
    syn_stats_sort(tt, k);
    syn_stats_sort(tp, kt);
    syn_stats_sort(ee, k);
    r->ttft_p50 = syn_stats_quantile(tt, k, 0.5);
    r->ttft_p90 = syn_stats_quantile(tt, k, 0.9);
    r->ttft_p99 = syn_stats_quantile(tt, k, 0.99);
    r->ttft_max = k ? tt[k - 1] : 0;
    r->tpot_p50 = syn_stats_quantile(tp, kt, 0.5);
    r->tpot_p99 = syn_stats_quantile(tp, kt, 0.99);
    r->e2e_p99 = syn_stats_quantile(ee, k, 0.99);
    r->attainment = n ? (double)good / (double)n : 1;
    free(tt);
    free(tp);
    free(ee);
    if (r->completed < n) {
        rc = syn_seterr(err, errlen, SYN_ERANGE,
                        "sim: %zu of %zu requests never finished (max_workers 0?)",
                        n - r->completed, n);
        goto out;
    }
    *out = r;
    r = NULL;
    rc = SYN_OK;
out:
    if (rc == SYN_ENOMEM) syn_seterr(err, errlen, SYN_ENOMEM, "sim: out of memory");
    for (int i = 0; i < s.n_w; i++) {
        free(s.w[i].seqs);
        free(s.w[i].items);
    }
    free(s.w);
    free(s.h.v);
    free(s.rq);
    free(s.queue);
    syn_sim_result_free(r);
    return rc;
}

void syn_sim_result_free(struct syn_sim_result *r)
{
    if (!r) return;
    free(r->ttft);
    free(r->tpot);
    free(r->e2e);
    free(r->ticks);
    free(r);
}
