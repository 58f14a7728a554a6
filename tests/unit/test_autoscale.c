/* The autoscaling policy as a pure function: from zero, min_warm, backlog, arrivals, the cap,
 * and draining a surplus that lasted. */
#include "harness.h"
#include "synapse/autoscale.h"

static struct syn_scale_policy policy(int min_warm, int max_workers)
{
    struct syn_scale_policy p = syn_scale_default_policy();
    p.min_warm = min_warm;
    p.max_workers = max_workers;
    p.slots_per_worker = 10;
    p.target_util = 1.0;
    return p;
}

TEST(autoscale_idle_pool_stays_at_zero)
{
    struct syn_scale_policy p = policy(0, 4);
    struct syn_scale_state s = {0};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 0);
    CHECK_EQ_INT(d.desired, 0);
    CHECK_EQ_INT(d.reason, SYN_SCALE_NONE);
}

TEST(autoscale_starts_one_from_zero)
{
    struct syn_scale_policy p = policy(0, 4);
    struct syn_scale_state s = {.waiting = 1};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 1);
    CHECK_EQ_INT(d.reason, SYN_SCALE_FROM_ZERO);
    /* one already starting: do not start another for the same request */
    s.starting = 1;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 0);
}

TEST(autoscale_keeps_min_warm)
{
    struct syn_scale_policy p = policy(2, 4);
    struct syn_scale_state s = {.alive = 1};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 1);
    CHECK_EQ_INT(d.reason, SYN_SCALE_MIN_WARM);
}

TEST(autoscale_backlog_and_cap)
{
    struct syn_scale_policy p = policy(0, 3);
    struct syn_scale_state s = {.alive = 1, .running = 10, .waiting = 15};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.desired, 3); /* 25 slots / 10 per worker */
    CHECK_EQ_INT(d.start, 2);
    CHECK_EQ_INT(d.reason, SYN_SCALE_BACKLOG);
    s.waiting = 100;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.desired, 3);
    s.alive = 3;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 0);
    CHECK_EQ_INT(d.reason, SYN_SCALE_AT_MAX);
}

TEST(autoscale_arrival_rate_looks_ahead)
{
    struct syn_scale_policy p = policy(0, 8);
    /* 20 requests/s holding a slot 2 s each need 40 slots = 4 workers */
    struct syn_scale_state s = {.alive = 1, .running = 5, .arrival_rate = 20, .mean_service_s = 2};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.desired, 4);
    CHECK_EQ_INT(d.reason, SYN_SCALE_ARRIVALS);
}

TEST(autoscale_never_shrinks)
{
    struct syn_scale_policy p = policy(0, 8);
    struct syn_scale_state s = {.alive = 5};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.start, 0);
    CHECK_EQ_INT(d.desired, 5);
    CHECK_EQ_STR(syn_scale_reason_name(SYN_SCALE_FROM_ZERO), "from_zero");
}

TEST(autoscale_drains_a_lasting_surplus)
{
    struct syn_scale_policy p = policy(1, 8);
    p.idle_timeout_s = 10;
    /* two workers, load one can carry (8 of its 10 slots) */
    struct syn_scale_state s = {.alive = 2, .running = 8};
    struct syn_scale_decision d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.needed, 1);
    CHECK_EQ_INT(d.stop, 0); /* the surplus has not lasted yet */
    CHECK_EQ_INT(d.desired, 2);
    s.surplus_s = 9.9;
    CHECK_EQ_INT(syn_autoscale_decide(&p, &s).stop, 0);
    s.surplus_s = 10;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.stop, 1);
    CHECK_EQ_INT(d.start, 0);
    /* not while a worker starts, nor below min_warm, nor when the load needs them all */
    s.starting = 1;
    CHECK_EQ_INT(syn_autoscale_decide(&p, &s).stop, 0);
    s.starting = 0;
    s.running = 12;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.needed, 2);
    CHECK_EQ_INT(d.stop, 0);
    s.running = 0;
    s.alive = 1;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.needed, 1); /* min_warm */
    CHECK_EQ_INT(d.stop, 0);
    /* scale to zero: the last worker is never drained (it leaves by idling out) */
    p.min_warm = 0;
    d = syn_autoscale_decide(&p, &s);
    CHECK_EQ_INT(d.needed, 0);
    CHECK_EQ_INT(d.stop, 0);
    s.alive = 2;
    CHECK_EQ_INT(syn_autoscale_decide(&p, &s).stop, 1);
    /* and never with the idle timeout off (workers kept up) */
    p.idle_timeout_s = 0;
    CHECK_EQ_INT(syn_autoscale_decide(&p, &s).stop, 0);
}
