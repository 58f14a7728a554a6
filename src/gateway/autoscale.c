/*
 * The autoscaling policy (include/synapse/autoscale.h). Slots needed now are the running
 * sequences plus the queue; slots needed soon are arrival_rate x mean service time (Little's
 * law), looked at only when the service time is known. Each is divided by the slots a worker
 * offers at the target utilisation and rounded up; the result is clamped to [min_warm,
 * max_workers], and to at least one whenever anything waits. Fewer than are alive, for
 * idle_timeout_s in a row, drains one.
 */
#include "synapse/autoscale.h"

#include <math.h>

struct syn_scale_policy syn_scale_default_policy(void)
{
    struct syn_scale_policy p = {
        .min_warm = 0,
        .max_workers = 4,
        .slots_per_worker = 16,
        .target_util = 0.8,
        .idle_timeout_s = 60,
        .cold_start_s = 1,
    };
    return p;
}

const char *syn_scale_reason_name(int reason)
{
    static const char *const names[] = {"none",    "min_warm", "from_zero",
                                        "backlog", "arrivals", "at_max"};
    return reason >= 0 && reason <= SYN_SCALE_AT_MAX ? names[reason] : "unknown";
}

double syn_scale_surplus_s(double since, double now)
{
    return since >= 0 ? now - since : 0;
}

double syn_scale_surplus_next(double since, const struct syn_scale_decision *d, int alive,
                              double now)
{
    if (d->stop > 0) return now;
    if (d->needed >= alive) return -1;
    return since < 0 ? now : since;
}

static int workers_for(double slots, const struct syn_scale_policy *p)
{
    double per = (double)(p->slots_per_worker > 0 ? p->slots_per_worker : 1) *
                 (p->target_util > 0 && p->target_util <= 1 ? p->target_util : 1.0);
    if (slots <= 0) return 0;
    double w = ceil(slots / per - 1e-9);
    return w > 1e6 ? 1000000 : (int)w;
}

struct syn_scale_decision syn_autoscale_decide(const struct syn_scale_policy *p,
                                               const struct syn_scale_state *s)
{
    struct syn_scale_decision d = {0, 0, SYN_SCALE_NONE, 0, 0};
    int have = s->alive + s->starting;
    int backlog = workers_for((double)s->running + (double)s->waiting, p);
    int arrivals = 0;
    if (s->mean_service_s > 0 && s->arrival_rate > 0)
        arrivals = workers_for(s->arrival_rate * s->mean_service_s, p);

    int want = backlog, reason = SYN_SCALE_BACKLOG;
    if (arrivals > want) {
        want = arrivals;
        reason = SYN_SCALE_ARRIVALS;
    }
    if (s->waiting > 0 && want < 1) want = 1;
    if (want <= p->min_warm) {
        want = p->min_warm;
        reason = SYN_SCALE_MIN_WARM;
    }
    if (s->waiting > 0 && have == 0) reason = SYN_SCALE_FROM_ZERO;
    d.needed = want < p->max_workers ? want : (p->max_workers > 0 ? p->max_workers : 0);
    /* shrink one at a time, only after a surplus that lasted the idle timeout (the patience
     * an idle worker gets before it exits: a worker kept for bursts stays as long either
     * way), and never the last worker: under traffic that heartbeats barely show (short
     * jobs) the load can look like none, and going to zero is for a worker that really idles
     * (it exits by itself) */
    if (d.needed < s->alive && s->alive > p->min_warm && s->alive > 1 && s->starting == 0 &&
        p->idle_timeout_s > 0 && s->surplus_s >= p->idle_timeout_s)
        d.stop = 1;
    /* the workers to have: never fewer than now (draining is `stop`, not a lower target) */
    if (want < have) want = have;
    if (want > p->max_workers) {
        want = p->max_workers > have ? p->max_workers : have;
        if (want <= have) reason = SYN_SCALE_AT_MAX;
    }
    d.desired = want;
    d.start = want - have > 0 ? want - have : 0;
    d.reason = d.start > 0 || reason == SYN_SCALE_AT_MAX ? reason : SYN_SCALE_NONE;
    if (d.reason == SYN_SCALE_AT_MAX && (backlog <= have && arrivals <= have))
        d.reason = SYN_SCALE_NONE;
    return d;
}
