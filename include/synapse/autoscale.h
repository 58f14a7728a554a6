/*
 * The autoscaling policy: a pure function from what the pool looks like now to how many workers
 * to start, with the reason. The gateway's pool manager calls it on a timer and on every request
 * that finds no worker; the cost simulator (`synapse bench sim`) calls the very same function
 * over a trace. Nothing here reads clocks, Redis or processes.
 *
 * Scale-down happens two ways. A worker beyond min_warm exits by itself after idle_timeout
 * seconds without work (the pool starts those with --idle-timeout, and the min_warm ones with
 * none). But the queue hands jobs to whichever worker asks, so under steady traffic that one
 * worker could carry, every surplus worker still gets a job now and then and never idles out.
 * So the policy also asks the pool to drain one worker once the pool has had more workers than
 * the load needs for the idle timeout in a row, never the last one (`stop`): the pool picks
 * one started beyond min_warm and sends it SIGTERM, and it finishes its running sequences before
 * it exits, so a busy worker is never killed mid-sequence.
 */
#ifndef SYNAPSE_AUTOSCALE_H
#define SYNAPSE_AUTOSCALE_H

#include <stdint.h>

struct syn_scale_policy {
    int min_warm;          /* workers kept up at all times (pre-warmed); 0 = scale to zero */
    int max_workers;       /* never more than this many alive or starting */
    int slots_per_worker;  /* sequences one worker batches (its --max-seqs) */
    double target_util;    /* aim for this share of slots in use, 0..1 (default 0.8) */
    double idle_timeout_s; /* what burst workers are started with */
    double cold_start_s;   /* expected spawn-to-ready time (for the arrival-rate look-ahead) */
};

/* What the pool looks like. */
struct syn_scale_state {
    int alive;             /* workers registered and heartbeating (ready or draining) */
    int starting;          /* workers started but not yet ready */
    int64_t waiting;       /* jobs in the queue not yet taken by any worker */
    int64_t running;       /* sequences running on all workers */
    int free_slots;        /* free slots reported by ready workers */
    double arrival_rate;   /* requests per second, recent */
    double mean_service_s; /* seconds a request holds a slot, recent (0 = unknown) */
    double surplus_s;      /* how long alive has stayed above the decision's `needed` without a
                              break (the caller's clock; 0 = not in surplus) */
};

enum syn_scale_reason {
    SYN_SCALE_NONE = 0,      /* enough workers */
    SYN_SCALE_MIN_WARM = 1,  /* below min_warm */
    SYN_SCALE_FROM_ZERO = 2, /* work waiting and no worker alive or starting */
    SYN_SCALE_BACKLOG = 3,   /* the queue and running sequences need more slots */
    SYN_SCALE_ARRIVALS = 4,  /* the arrival rate will need more slots (Little's law) */
    SYN_SCALE_AT_MAX = 5,    /* more wanted, but max_workers reached */
};

struct syn_scale_decision {
    int desired; /* workers the pool should have (alive + starting) */
    int start;   /* workers to start now (desired - alive - starting, >= 0) */
    int reason;  /* enum syn_scale_reason */
    int needed;  /* workers the load needs now, within [min_warm, max_workers]; below alive is
                    a surplus, which the caller times into surplus_s */
    int stop;    /* workers to drain now (0 or 1): the surplus has lasted idle_timeout_s and
                    nothing is starting */
};

struct syn_scale_policy syn_scale_default_policy(void);

/* The decision for state s under policy p. */
struct syn_scale_decision syn_autoscale_decide(const struct syn_scale_policy *p,
                                               const struct syn_scale_state *s);

/* The surplus clock behind syn_scale_state.surplus_s, kept by the caller as `since` (the time
 * the current surplus began, < 0 when there is none) so that the pool and the simulator time a
 * surplus the same way. syn_scale_surplus_s gives the state's surplus_s at `now`;
 * syn_scale_surplus_next the clock after decision d was taken at `now` for a pool of `alive`
 * workers: started when d.needed first falls below alive, cleared when it does not, and
 * restarted after a drain, so that the next one waits a full period. */
double syn_scale_surplus_s(double since, double now);
double syn_scale_surplus_next(double since, const struct syn_scale_decision *d, int alive,
                              double now);

/* "none", "min_warm", "from_zero", "backlog", "arrivals", "at_max" (metric label values). */
const char *syn_scale_reason_name(int reason);

#endif
