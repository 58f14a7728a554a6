/* The per-model bounded queue and drain rate (see admission.h). */
#include "gateway/admission.h"

#include <math.h>

int64_t gw_adm_depth(const struct gw_adm *a)
{
    /* Redis's waiting count includes this gateway's own jobs that were still undelivered when
     * polled (at most local_at_poll of them); the rest belong to other gateways. */
    int64_t foreign = a->redis_waiting - a->local_at_poll;
    if (foreign < 0 || !a->backlog_known) foreign = 0;
    return a->local_waiting + foreign;
}

double gw_adm_drain_rate(const struct gw_adm *a, int64_t now_s)
{
    int64_t n = 0;
    for (int i = 0; i < GW_ADM_WINDOW; i++)
        if (a->finished_sec[i] > now_s - GW_ADM_WINDOW && a->finished_sec[i] <= now_s)
            n += a->finished[i];
    return (double)n / GW_ADM_WINDOW;
}

int gw_adm_admit(struct gw_adm *a, int max_queue, int64_t now_s, int *retry_after_s)
{
    int64_t depth = gw_adm_depth(a);
    if (depth < max_queue) {
        a->local_waiting++;
        a->admitted++;
        return 0;
    }
    a->rejected++;
    double rate = gw_adm_drain_rate(a, now_s);
    int retry = GW_ADM_RETRY_IDLE;
    if (rate > 0) {
        /* the time for the queue to drain below the limit at the recent pace */
        double s = ceil((double)(depth - max_queue + 1) / rate);
        retry = s < GW_ADM_RETRY_MIN   ? GW_ADM_RETRY_MIN
                : s > GW_ADM_RETRY_MAX ? GW_ADM_RETRY_MAX
                                       : (int)s;
    }
    if (retry_after_s) *retry_after_s = retry;
    return -1;
}

void gw_adm_left_queue(struct gw_adm *a)
{
    if (a->local_waiting > 0) a->local_waiting--;
}

void gw_adm_finished(struct gw_adm *a, int64_t now_s)
{
    int i = (int)(((now_s % GW_ADM_WINDOW) + GW_ADM_WINDOW) % GW_ADM_WINDOW);
    if (a->finished_sec[i] != now_s) {
        a->finished_sec[i] = now_s;
        a->finished[i] = 0;
    }
    a->finished[i]++;
}

void gw_adm_poll_sent(struct gw_adm *a)
{
    a->local_at_poll = a->local_waiting;
}

void gw_adm_backlog(struct gw_adm *a, int64_t waiting, int64_t pending)
{
    a->redis_waiting = waiting < 0 ? 0 : waiting;
    a->redis_pending = pending < 0 ? 0 : pending;
    a->backlog_known = 1;
}
