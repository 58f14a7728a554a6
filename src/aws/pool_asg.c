/*
 * The `asg` pool backend (pool_backend.h): GPU workers as instances of an EC2 Auto Scaling group
 * with minimum 0, driven through the Auto Scaling Query API (form-encoded POSTs, XML answers):
 *
 *   start(n)  DescribeAutoScalingGroups (if stale), then SetDesiredCapacity to what the group
 *             has plus n, capped at its MaxSize, HonorCooldown=false.
 *   observe   DescribeAutoScalingGroups at most every describe_interval_s; then
 *             SetInstanceProtection(true) for instances whose worker runs sequences and
 *             SetInstanceProtection(false) for instances whose worker is idle, so that a lower
 *             desired capacity, from whatever source, only ever terminates idle instances.
 *
 * Workers name themselves "{model}-{instance id}" (the launch template's user data does), which
 * is how a registry entry is matched to an instance.
 */
#include "synapse/pool_backend.h"

#include "aws/creds.h"
#include "aws/http.h"
#include "aws/sbuf.h"
#include "synapse/error.h"
#include "synapse/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG         "pool-asg"
#define MAX_INST    512
#define API_VERSION "2011-01-01"

struct instance {
    char id[32];       /* "i-0123456789abcdef0" */
    char state[40];    /* LifecycleState: Pending, InService, Terminating, ... */
    int protect;       /* ProtectedFromScaleIn as last known */
    double first_seen; /* monotonic */
    int registered;    /* its worker has been in the registry */
};

struct asg_backend {
    struct syn_pool_backend base; /* first: the interface */
    struct syn_pool_asg_params p;
    char group[256], region[64], endpoint[512];
    struct syn_http_client *http;
    struct syn_aws_credsrc credsrc;
    int have; /* a Describe has succeeded */
    double described_s;
    int desired, min_size, max_size;
    struct instance inst[MAX_INST];
    int n_inst;
    double last_observe_s;
    char on[MAX_INST][32], off[MAX_INST][32]; /* observe's protection lists */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *asg_name(const struct syn_pool_backend *b)
{
    (void)b;
    return "asg";
}

/* ---- a minimal XML reader: elements, text, no attributes that matter ---- */

struct xspan {
    const char *s, *e; /* content between the start and end tags */
};

/* The next child element of [*pos, end): its name (into name) and content. Skips text,
 * declarations and comments. Returns 1 found, 0 none left. Handles nesting by depth. */
static int xml_next(const char **pos, const char *end, char *name, size_t ncap, struct xspan *out)
{
    const char *p = *pos;
    for (;;) {
        while (p < end && *p != '<') p++;
        if (p + 1 >= end) return 0;
        if (p[1] == '?' || p[1] == '!') {
            const char *gt = memchr(p, '>', (size_t)(end - p));
            if (!gt) return 0;
            p = gt + 1;
            continue;
        }
        if (p[1] == '/') return 0; /* the parent's end tag */
        break;
    }
    const char *ns = p + 1, *ne = ns;
    while (ne < end && *ne != '>' && *ne != ' ' && *ne != '/' && *ne != '\t' && *ne != '\n') ne++;
    const char *gt = memchr(ne, '>', (size_t)(end - ne));
    if (!gt) return 0;
    snprintf(name, ncap, "%.*s", (int)(ne - ns), ns);
    if (gt[-1] == '/') { /* <empty/> */
        out->s = out->e = gt;
        *pos = gt + 1;
        return 1;
    }
    /* find the matching end tag, counting nested elements of any name */
    const char *q = gt + 1;
    int depth = 1;
    while (q < end) {
        const char *lt = memchr(q, '<', (size_t)(end - q));
        if (!lt) return 0;
        const char *g2 = memchr(lt, '>', (size_t)(end - lt));
        if (!g2) return 0;
        if (lt[1] == '/') {
            if (--depth == 0) {
                out->s = gt + 1;
                out->e = lt;
                *pos = g2 + 1;
                return 1;
            }
        } else if (lt[1] != '?' && lt[1] != '!' && g2[-1] != '/') {
            depth++;
        }
        q = g2 + 1;
    }
    return 0;
}

/* The first child element called name directly inside sp. */
static int xml_child(struct xspan sp, const char *name, struct xspan *out)
{
    const char *p = sp.s;
    char n[64];
    struct xspan c;
    while (xml_next(&p, sp.e, n, sizeof n, &c))
        if (!strcmp(n, name)) {
            *out = c;
            return 1;
        }
    return 0;
}

/* A path of child names ("A/B/C") from sp. */
static int xml_path(struct xspan sp, const char *path, struct xspan *out)
{
    char part[64];
    while (*path) {
        size_t l = strcspn(path, "/");
        snprintf(part, sizeof part, "%.*s", (int)l, path);
        if (!xml_child(sp, part, &sp)) return 0;
        path += l + (path[l] == '/');
    }
    *out = sp;
    return 1;
}

/* The text of sp with the five XML entities decoded, into buf. */
static const char *xml_text(struct xspan sp, char *buf, size_t cap)
{
    size_t n = 0;
    for (const char *p = sp.s; p < sp.e && n + 1 < cap; p++) {
        static const struct {
            const char *ent;
            char c;
        } ents[] = {
            {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}, {"&apos;", '\''}};
        char c = *p;
        if (c == '&')
            for (size_t k = 0; k < sizeof ents / sizeof ents[0]; k++) {
                size_t el = strlen(ents[k].ent);
                if ((size_t)(sp.e - p) >= el && !strncmp(p, ents[k].ent, el)) {
                    c = ents[k].c;
                    p += el - 1;
                    break;
                }
            }
        buf[n++] = c;
    }
    buf[n] = 0;
    return buf;
}

static int xml_int(struct xspan sp, const char *name, int *out)
{
    struct xspan c;
    char buf[32];
    if (!xml_child(sp, name, &c)) return 0;
    *out = atoi(xml_text(c, buf, sizeof buf));
    return 1;
}

/* ---- the Query API ---- */

/* POSTs Action=... with params ("&"-joined, already form-encoded); *resp holds the answer.
 * Returns 0 on HTTP 200, else a negative syn_err with AWS's error code and message. */
static int call(struct asg_backend *ab, const char *action, const char *params,
                struct syn_http_resp *resp, char *err, size_t errlen)
{
    struct syn_aws_creds creds;
    int rc;
    memset(resp, 0, sizeof *resp);
    if (ab->p.creds)
        creds = *ab->p.creds;
    else if ((rc = syn_aws_creds_get(&ab->credsrc, &creds, err, errlen)))
        return rc;
    struct aws_sb body = {0};
    aws_sb_addf(&body, "Action=%s&Version=%s", action, API_VERSION);
    if (params && *params) aws_sb_addf(&body, "&%s", params);
    if (body.failed) return syn_seterr(err, errlen, SYN_ENOMEM, "asg: out of memory");
    char url[600];
    snprintf(url, sizeof url, "%s/", ab->endpoint);
    const char *hdr[] = {"Content-Type: application/x-www-form-urlencoded; charset=utf-8"};
    struct syn_http_req rq = {.method = "POST",
                              .url = url,
                              .headers = hdr,
                              .n_headers = 1,
                              .body = body.s,
                              .body_len = body.len,
                              .timeout_ms = 10000,
                              .creds = &creds,
                              .region = ab->region,
                              .service = "autoscaling"};
    rc = syn_http_do(ab->http, &rq, resp, err, errlen);
    aws_sb_free(&body);
    if (rc) return rc;
    if (resp->status != 200) {
        struct xspan doc = {resp->body, resp->body + resp->body_len}, e;
        char code[128] = "", msg[512] = "";
        if (xml_path(doc, "ErrorResponse/Error/Code", &e)) xml_text(e, code, sizeof code);
        if (xml_path(doc, "ErrorResponse/Error/Message", &e)) xml_text(e, msg, sizeof msg);
        return syn_seterr(err, errlen, SYN_EIO, "asg: %s: HTTP %ld: %s%s%s", action, resp->status,
                          code, *code ? ": " : "", *msg ? msg : resp->body);
    }
    return SYN_OK;
}

static struct instance *find_inst(struct asg_backend *ab, const char *id)
{
    for (int i = 0; i < ab->n_inst; i++)
        if (!strcmp(ab->inst[i].id, id)) return &ab->inst[i];
    return NULL;
}

static int describe(struct asg_backend *ab, char *err, size_t errlen)
{
    struct aws_sb prm = {0};
    aws_sb_adds(&prm, "AutoScalingGroupNames.member.1=");
    aws_sb_add_uri(&prm, ab->group, strlen(ab->group), 0);
    struct syn_http_resp r = {0};
    int rc = prm.failed ? syn_seterr(err, errlen, SYN_ENOMEM, "asg: out of memory")
                        : call(ab, "DescribeAutoScalingGroups", prm.s, &r, err, errlen);
    aws_sb_free(&prm);
    if (rc) {
        syn_http_resp_free(&r);
        return rc;
    }
    struct xspan doc = {r.body, r.body + r.body_len}, groups, g;
    rc = SYN_EIO;
    if (!xml_path(doc,
                  "DescribeAutoScalingGroupsResponse/DescribeAutoScalingGroupsResult/"
                  "AutoScalingGroups/member",
                  &g)) {
        if (xml_path(doc,
                     "DescribeAutoScalingGroupsResponse/DescribeAutoScalingGroupsResult/"
                     "AutoScalingGroups",
                     &groups))
            rc = syn_seterr(err, errlen, SYN_ENOTFOUND, "asg: no Auto Scaling group named '%s'",
                            ab->group);
        else
            syn_seterr(err, errlen, SYN_EIO, "asg: DescribeAutoScalingGroups: unexpected answer");
        syn_http_resp_free(&r);
        return rc;
    }
    int desired = 0, mn = 0, mx = 0;
    if (!xml_int(g, "DesiredCapacity", &desired) || !xml_int(g, "MinSize", &mn) ||
        !xml_int(g, "MaxSize", &mx)) {
        syn_http_resp_free(&r);
        return syn_seterr(err, errlen, SYN_EIO,
                          "asg: DescribeAutoScalingGroups: no DesiredCapacity/MinSize/MaxSize");
    }
    /* the instances now, keeping what we knew of those we had seen */
    struct instance next[MAX_INST];
    int nn = 0;
    double now = mono_s();
    struct xspan insts, m;
    if (xml_child(g, "Instances", &insts)) {
        const char *p = insts.s;
        char name[64];
        while (nn < MAX_INST && xml_next(&p, insts.e, name, sizeof name, &m)) {
            if (strcmp(name, "member")) continue;
            struct xspan f;
            struct instance in;
            memset(&in, 0, sizeof in);
            if (!xml_child(m, "InstanceId", &f)) continue;
            xml_text(f, in.id, sizeof in.id);
            if (xml_child(m, "LifecycleState", &f)) xml_text(f, in.state, sizeof in.state);
            char b[16] = "";
            if (xml_child(m, "ProtectedFromScaleIn", &f)) xml_text(f, b, sizeof b);
            in.protect = !strcmp(b, "true");
            struct instance *old = find_inst(ab, in.id);
            in.first_seen = old ? old->first_seen : now;
            in.registered = old ? old->registered : 0;
            next[nn++] = in;
        }
    }
    memcpy(ab->inst, next, sizeof next[0] * (size_t)nn);
    ab->n_inst = nn;
    ab->desired = desired;
    ab->min_size = mn;
    ab->max_size = mx;
    ab->have = 1;
    ab->described_s = now;
    syn_http_resp_free(&r);
    return SYN_OK;
}

/* Worker ids on instances are "{model}-{instance id}". */
static int ends_with(const char *s, const char *suffix)
{
    size_t a = s ? strlen(s) : 0, b = strlen(suffix);
    return b > 0 && a >= b && !strcmp(s + a - b, suffix);
}

static int leaving(const struct instance *in)
{
    return !strncmp(in->state, "Terminating", 11) || !strcmp(in->state, "Detaching") ||
           !strcmp(in->state, "Detached") || !strncmp(in->state, "Standby", 7);
}

static int asg_start(struct syn_pool_backend *b, int n, char *err, size_t errlen)
{
    struct asg_backend *ab = (struct asg_backend *)b;
    int rc;
    if (!ab->have || mono_s() - ab->described_s > ab->p.describe_interval_s)
        if ((rc = describe(ab, err, errlen))) return rc;
    int present = 0;
    for (int i = 0; i < ab->n_inst; i++) present += !leaving(&ab->inst[i]);
    int base = ab->desired > present ? ab->desired : present;
    int want = base + n > ab->max_size ? ab->max_size : base + n;
    if (want <= ab->desired) {
        if (n > 0)
            syn_info(LOG, "group %s is at its maximum (%d): not starting more", ab->group,
                     ab->max_size);
        return 0;
    }
    struct aws_sb prm = {0};
    aws_sb_adds(&prm, "AutoScalingGroupName=");
    aws_sb_add_uri(&prm, ab->group, strlen(ab->group), 0);
    aws_sb_addf(&prm, "&DesiredCapacity=%d&HonorCooldown=false", want);
    struct syn_http_resp r = {0};
    rc = prm.failed ? syn_seterr(err, errlen, SYN_ENOMEM, "asg: out of memory")
                    : call(ab, "SetDesiredCapacity", prm.s, &r, err, errlen);
    aws_sb_free(&prm);
    syn_http_resp_free(&r);
    if (rc) return rc;
    int started = want - ab->desired;
    syn_info(LOG, "group %s: desired capacity %d -> %d", ab->group, ab->desired, want);
    ab->desired = want;
    return started;
}

/* SetInstanceProtection for ids (at most 50 per call, the API's limit). */
static int protect(struct asg_backend *ab, char ids[][32], int n, int on, char *err, size_t errlen)
{
    for (int k = 0; k < n; k += 50) {
        struct aws_sb prm = {0};
        aws_sb_adds(&prm, "AutoScalingGroupName=");
        aws_sb_add_uri(&prm, ab->group, strlen(ab->group), 0);
        for (int i = k; i < n && i < k + 50; i++) {
            aws_sb_addf(&prm, "&InstanceIds.member.%d=", i - k + 1);
            aws_sb_add_uri(&prm, ids[i], strlen(ids[i]), 0);
        }
        aws_sb_addf(&prm, "&ProtectedFromScaleIn=%s", on ? "true" : "false");
        struct syn_http_resp r = {0};
        int rc = prm.failed ? syn_seterr(err, errlen, SYN_ENOMEM, "asg: out of memory")
                            : call(ab, "SetInstanceProtection", prm.s, &r, err, errlen);
        aws_sb_free(&prm);
        syn_http_resp_free(&r);
        if (rc) return rc;
        for (int i = k; i < n && i < k + 50; i++) {
            struct instance *in = find_inst(ab, ids[i]);
            if (in) in->protect = on;
        }
        syn_info(LOG, "group %s: scale-in protection %s for %d instance(s)", ab->group,
                 on ? "on" : "off", (n - k) < 50 ? n - k : 50);
    }
    return SYN_OK;
}

static int asg_observe(struct syn_pool_backend *b, const struct syn_pool_worker_view *w, int n,
                       struct syn_pool_observation *out, char *err, size_t errlen)
{
    struct asg_backend *ab = (struct asg_backend *)b;
    double now = mono_s();
    int rc = SYN_OK;
    memset(out, 0, sizeof *out);
    if (!ab->have || now - ab->described_s >= ab->p.describe_interval_s)
        rc = describe(ab, err, errlen);
    if (ab->have) {
        char(*on)[32] = ab->on, (*off)[32] = ab->off;
        int n_on = 0, n_off = 0, present = 0;
        for (int i = 0; i < ab->n_inst; i++) {
            struct instance *in = &ab->inst[i];
            if (leaving(in)) continue;
            present++;
            int found = 0, busy = 0;
            for (int k = 0; k < n; k++)
                if (ends_with(w[k].id, in->id)) {
                    found = 1;
                    busy |= w[k].running > 0;
                }
            if (found) in->registered = 1;
            if (!in->registered && now - in->first_seen < ab->p.register_timeout_s) out->starting++;
            if (!strcmp(in->state, "InService") && found) {
                if (busy && !in->protect) snprintf(on[n_on++], 32, "%s", in->id);
                if (!busy && in->protect) snprintf(off[n_off++], 32, "%s", in->id);
            }
        }
        /* capacity asked for but not launched yet is starting too */
        if (ab->desired > present) out->starting += ab->desired - present;
        int prc = SYN_OK;
        if (n_on) prc = protect(ab, on, n_on, 1, err, errlen);
        if (n_off && prc == SYN_OK) prc = protect(ab, off, n_off, 0, err, errlen);
        if (rc == SYN_OK) rc = prc;
        out->active = present;
        out->limit = ab->max_size;
        for (int i = 0; i < ab->n_inst; i++) out->protected_now += ab->inst[i].protect;
        if (ab->last_observe_s > 0) out->unit_seconds = present * (now - ab->last_observe_s);
    } else {
        out->limit = -1;
    }
    ab->last_observe_s = now;
    return rc;
}

static void asg_free(struct syn_pool_backend *b)
{
    struct asg_backend *ab = (struct asg_backend *)b;
    if (!ab) return;
    syn_http_client_free(ab->http);
    free(ab);
}

int syn_pool_asg_new(const struct syn_pool_asg_params *p, struct syn_pool_backend **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    if (!p->group || !*p->group)
        return syn_seterr(err, errlen, SYN_EINVAL, "asg: the Auto Scaling group name is required");
    const char *region = p->region ? p->region : syn_aws_region();
    if (!region || !*region)
        return syn_seterr(err, errlen, SYN_EINVAL, "asg: no region (set AWS_REGION or pass one)");
    if (strlen(p->group) >= 256 || strlen(region) >= 64 ||
        (p->endpoint && strlen(p->endpoint) >= 512))
        return syn_seterr(err, errlen, SYN_EINVAL, "asg: a parameter is too long");
    struct asg_backend *ab = calloc(1, sizeof *ab);
    if (!ab || !(ab->http = syn_http_client_new())) {
        free(ab);
        return syn_seterr(err, errlen, SYN_ENOMEM, "asg: out of memory");
    }
    ab->p = *p;
    snprintf(ab->group, sizeof ab->group, "%s", p->group);
    snprintf(ab->region, sizeof ab->region, "%s", region);
    if (p->endpoint && *p->endpoint)
        snprintf(ab->endpoint, sizeof ab->endpoint, "%s", p->endpoint);
    else
        snprintf(ab->endpoint, sizeof ab->endpoint, "https://autoscaling.%s.amazonaws.com", region);
    size_t el = strlen(ab->endpoint);
    while (el > 0 && ab->endpoint[el - 1] == '/') ab->endpoint[--el] = 0;
    if (ab->p.describe_interval_s <= 0) ab->p.describe_interval_s = 5;
    if (ab->p.register_timeout_s <= 0) ab->p.register_timeout_s = 600;
    ab->p.group = ab->p.region = ab->p.endpoint = NULL;
    ab->base.name = asg_name;
    ab->base.start = asg_start;
    ab->base.observe = asg_observe;
    ab->base.free = asg_free;
    *out = &ab->base;
    return SYN_OK;
}
