/*
 * The cloud pool backends (include/synapse/pool_backend.h) against local servers that play the
 * Lambda Invoke API and the EC2 Auto Scaling Query API. Every request they receive is verified
 * the way AWS does: the Authorization header is taken apart, the request is signed again from
 * the headers it lists with the same credentials, and anything that does not match (or is more
 * than five minutes off) gets 403 SignatureDoesNotMatch. Also the credential chain (environment,
 * ECS container endpoint, IMDSv2) against local credential servers.
 */
#include "harness.h"
#include "http_server.h"
#include "synapse/pool_backend.h"
#include "synapse/queue.h"
#include "synapse/workpool.h"

#include <jansson.h>
#include <pthread.h>
#include <strings.h>
#include <time.h>

/* ---- verifying SigV4 like the service would ---- */

struct verifier {
    const char *ak, *sk, *token; /* what the server believes the caller has */
    const char *service;
    int checked, bad; /* requests verified, of which rejected */
    char last_error[512];
    char last_signed_headers[512];
};

/* Returns 1 when rq carries a valid signature for v's credentials. */
static int verify(struct verifier *v, const struct th_request *rq)
{
    v->checked++;
    const char *auth = th_header(rq, "Authorization");
    const char *date = th_header(rq, "X-Amz-Date");
    char ak[128], scope_date[16], region[64], service[64], sh[512], sig[80];
    if (!auth || !date ||
        sscanf(auth,
               "AWS4-HMAC-SHA256 Credential=%127[^/]/%15[^/]/%63[^/]/%63[^/]/aws4_request, "
               "SignedHeaders=%511[^,], Signature=%79s",
               ak, scope_date, region, service, sh, sig) != 6) {
        snprintf(v->last_error, sizeof v->last_error, "malformed Authorization '%s'",
                 auth ? auth : "(none)");
        v->bad++;
        return 0;
    }
    snprintf(v->last_signed_headers, sizeof v->last_signed_headers, "%s", sh);
    int64_t t = syn_sigv4_parse_time(date);
    int64_t now = (int64_t)time(NULL);
    if (strcmp(ak, v->ak) || strcmp(service, v->service) || t < now - 300 || t > now + 300 ||
        strncmp(date, scope_date, 8)) {
        snprintf(v->last_error, sizeof v->last_error, "wrong key, service or time");
        v->bad++;
        return 0;
    }
    /* the headers it signed, as received */
    struct syn_sigv4_header h[TH_MAX_HEADERS];
    int n = 0, sign_body = 0;
    char list[512];
    snprintf(list, sizeof list, "%s", sh);
    for (char *save = NULL, *name = strtok_r(list, ";", &save); name;
         name = strtok_r(NULL, ";", &save)) {
        int found = 0;
        for (int i = 0; i < rq->nh; i++)
            if (!strcasecmp(rq->h[i].name, name)) {
                h[n++] = (struct syn_sigv4_header){rq->h[i].name, rq->h[i].value};
                found = 1;
            }
        if (!found) {
            snprintf(v->last_error, sizeof v->last_error, "signed header %s is missing", name);
            v->bad++;
            return 0;
        }
        sign_body |= !strcmp(name, "x-amz-content-sha256");
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", rq->target);
    char *q = strchr(path, '?');
    if (q) *q++ = 0;
    struct syn_sigv4_request sr = {rq->method, path, q, h, n, rq->body, rq->body_len};
    struct syn_sigv4_params p = {.region = region,
                                 .service = service,
                                 .time_s = t,
                                 .normalize_path = 1,
                                 .sign_body = sign_body};
    struct syn_aws_creds c = {v->ak, v->sk, v->token};
    struct syn_sigv4_result res;
    char err[256];
    int ok = syn_sigv4_sign(&p, &c, &sr, &res, err, sizeof err) == 0 && !strcmp(res.signature, sig);
    /* the token the caller used must be the one the server knows */
    const char *tok = th_header(rq, "X-Amz-Security-Token");
    if (v->token && (!tok || strcmp(tok, v->token) || !strstr(sh, "x-amz-security-token"))) ok = 0;
    if (!ok) {
        snprintf(v->last_error, sizeof v->last_error, "signature mismatch (got %s)", sig);
        v->bad++;
    }
    syn_sigv4_result_free(&res);
    return ok;
}

static void deny(struct th_response *resp, const struct verifier *v, int xml)
{
    resp->status = 403;
    if (xml)
        th_body(resp,
                "<ErrorResponse><Error><Type>Sender</Type><Code>SignatureDoesNotMatch</Code>"
                "<Message>%s</Message></Error></ErrorResponse>",
                v->last_error);
    else {
        snprintf(resp->headers, sizeof resp->headers,
                 "x-amzn-ErrorType: InvalidSignatureException\r\n");
        th_body(resp, "{\"message\":\"%s\"}", v->last_error);
    }
}

/* ---- a Lambda Invoke API ---- */

struct fake_lambda {
    pthread_mutex_t mu;
    struct verifier v;
    char function[128];
    int throttle; /* answer 429 */
    int invocations;
    char worker_ids[64][101];
    char last_payload[1024];
    char last_target[512];
};

static void lambda_handler(void *ctx, const struct th_request *rq, struct th_response *resp)
{
    struct fake_lambda *f = ctx;
    pthread_mutex_lock(&f->mu);
    snprintf(f->last_target, sizeof f->last_target, "%.500s", rq->target);
    char want[256];
    snprintf(want, sizeof want, "/2015-03-31/functions/%s/invocations", f->function);
    if (!verify(&f->v, rq)) {
        deny(resp, &f->v, 0);
    } else if (strcmp(rq->method, "POST") || strncmp(rq->target, want, strlen(want))) {
        resp->status = 404;
        snprintf(resp->headers, sizeof resp->headers,
                 "x-amzn-ErrorType: ResourceNotFoundException\r\n");
        th_body(resp, "{\"Message\":\"Function not found: %s\"}", rq->target);
    } else if (f->throttle) {
        resp->status = 429;
        th_body(resp, "{\"Reason\":\"ReservedFunctionConcurrentInvocationLimitExceeded\"}");
    } else {
        const char *it = th_header(rq, "X-Amz-Invocation-Type");
        json_t *j = json_loads(rq->body, 0, NULL);
        const char *wid = json_string_value(json_object_get(j, "worker_id"));
        if (!it || strcmp(it, "Event") || !wid || f->invocations >= 64) {
            resp->status = 400;
            th_body(resp, "{\"message\":\"expected an Event invocation with a worker_id\"}");
        } else {
            snprintf(f->worker_ids[f->invocations++], 101, "%s", wid);
            snprintf(f->last_payload, sizeof f->last_payload, "%s", rq->body);
            resp->status = 202;
        }
        json_decref(j);
    }
    pthread_mutex_unlock(&f->mu);
}

static struct fake_lambda *fake_lambda_new(const char *ak, const char *sk, const char *token)
{
    struct fake_lambda *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->v = (struct verifier){ak, sk, token, "lambda", 0, 0, "", ""};
    snprintf(f->function, sizeof f->function, "synapse-worker");
    return f;
}

static const struct syn_aws_creds test_creds = {"AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL};

static struct syn_pool_backend *lambda_backend(const char *url, int max_conc,
                                               double register_timeout,
                                               const struct syn_aws_creds *creds)
{
    struct syn_pool_lambda_params p = {.function = "synapse-worker",
                                       .region = "us-east-1",
                                       .endpoint = url,
                                       .model_name = "stories",
                                       .max_concurrency = max_conc,
                                       .idle_timeout_s = 20,
                                       .register_timeout_s = register_timeout,
                                       .creds = creds};
    struct syn_pool_backend *b;
    char err[256];
    if (syn_pool_lambda_new(&p, &b, err, sizeof err)) FAIL("lambda backend: %s", err);
    return b;
}

TEST(aws_pool_lambda_invokes_signed_events_and_counts_concurrency)
{
    struct fake_lambda *f = fake_lambda_new("AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL);
    struct th_server *s = th_start(lambda_handler, f);
    struct syn_pool_backend *b = lambda_backend(th_url(s), 3, 60, &test_creds);
    CHECK_EQ_STR(b->name(b), "lambda");
    char err[256];
    /* five wanted, three allowed at once */
    CHECK_EQ_INT(b->start(b, 5, err, sizeof err), 3);
    CHECK_EQ_INT(f->invocations, 3);
    CHECK_EQ_INT(f->v.checked, 3);
    CHECK_EQ_INT(f->v.bad, 0);
    CHECK(strstr(f->v.last_signed_headers, "x-amz-invocation-type") != NULL);
    json_t *pl = json_loads(f->last_payload, 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(pl, "mode")), "drain");
    CHECK_EQ_STR(json_string_value(json_object_get(pl, "model")), "stories");
    CHECK_NEAR(json_number_value(json_object_get(pl, "idle_timeout_s")), 20, 1e-9);
    json_decref(pl);
    CHECK(strcmp(f->worker_ids[0], f->worker_ids[1]) != 0);

    struct syn_pool_observation o;
    CHECK_EQ_INT(b->observe(b, NULL, 0, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.starting, 3);
    CHECK_EQ_INT(o.active, 3);
    CHECK_EQ_INT(o.limit, 3);
    /* two of them register; one is busy */
    struct syn_pool_worker_view w[2] = {{f->worker_ids[0], 2, 1}, {f->worker_ids[1], 0, 1}};
    CHECK_EQ_INT(b->observe(b, w, 2, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.starting, 1);
    CHECK_EQ_INT(o.active, 3);
    CHECK(o.unit_seconds > 0);
    /* then both leave the registry: their invocations are over */
    CHECK_EQ_INT(b->observe(b, NULL, 0, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.active, 1);
    CHECK_EQ_INT(o.starting, 1);
    /* which makes room for two more */
    CHECK_EQ_INT(b->start(b, 5, err, sizeof err), 2);
    CHECK_EQ_INT(f->invocations, 5);
    CHECK_EQ_INT(f->v.bad, 0);
    b->free(b);
    th_stop(s);
}

TEST(aws_pool_lambda_lost_invocations_throttling_and_errors)
{
    struct fake_lambda *f = fake_lambda_new("AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL);
    struct th_server *s = th_start(lambda_handler, f);
    char err[256];
    /* an invocation whose worker never registers stops counting after register_timeout */
    struct syn_pool_backend *b = lambda_backend(th_url(s), 0, 0.3, &test_creds);
    CHECK_EQ_INT(b->start(b, 2, err, sizeof err), 2);
    struct syn_pool_observation o;
    b->observe(b, NULL, 0, &o, err, sizeof err);
    CHECK_EQ_INT(o.active, 2);
    CHECK_EQ_INT(o.limit, -1);
    usleep(400 * 1000);
    b->observe(b, NULL, 0, &o, err, sizeof err);
    CHECK_EQ_INT(o.active, 0);
    /* throttled: fewer started, not an error */
    f->throttle = 1;
    CHECK_EQ_INT(b->start(b, 3, err, sizeof err), 0);
    f->throttle = 0;
    b->free(b);
    /* a function that does not exist: an error that says so */
    struct syn_pool_lambda_params p = {.function = "nope",
                                       .region = "us-east-1",
                                       .endpoint = th_url(s),
                                       .model_name = "stories",
                                       .creds = &test_creds};
    CHECK_EQ_INT(syn_pool_lambda_new(&p, &b, err, sizeof err), 0);
    CHECK(b->start(b, 1, err, sizeof err) < 0);
    CHECK(strstr(err, "HTTP 404") != NULL);
    CHECK(strstr(err, "ResourceNotFoundException") != NULL);
    b->free(b);
    /* wrong credentials: the server's verification refuses them, and we report it */
    struct syn_aws_creds wrong = {"AKIDTEST", "not-the-secret", NULL};
    b = lambda_backend(th_url(s), 0, 60, &wrong);
    int before = f->v.bad;
    CHECK(b->start(b, 1, err, sizeof err) < 0);
    CHECK(strstr(err, "HTTP 403") != NULL);
    CHECK(strstr(err, "InvalidSignatureException") != NULL);
    CHECK_EQ_INT(f->v.bad, before + 1);
    b->free(b);
    /* configuration errors */
    p.function = NULL;
    CHECK(syn_pool_lambda_new(&p, &b, err, sizeof err) < 0);
    CHECK(strstr(err, "function") != NULL);
    unsetenv("SYNAPSE_LAMBDA_FUNCTION");
    CHECK(syn_pool_backend_from_env("lambda", "stories", 30, &b, err, sizeof err) < 0);
    CHECK(strstr(err, "SYNAPSE_LAMBDA_FUNCTION") != NULL);
    CHECK_EQ_INT(syn_pool_backend_from_env("kubernetes", "stories", 30, &b, err, sizeof err), -8);
    th_stop(s);
}

/* ---- credentials from the ECS container endpoint and from IMDSv2 ---- */

struct fake_creds {
    pthread_mutex_t mu;
    int container_calls, imds_token_calls, imds_calls;
    int imds_token_ok; /* the PUT token was presented */
};

static void creds_handler(void *ctx, const struct th_request *rq, struct th_response *resp)
{
    struct fake_creds *f = ctx;
    pthread_mutex_lock(&f->mu);
    const char *doc = "{\"AccessKeyId\":\"ASIATEMP\",\"SecretAccessKey\":\"temp-secret\","
                      "\"Token\":\"temp/token+==\",\"Expiration\":\"2099-01-01T00:00:00Z\"}";
    if (!strcmp(rq->target, "/ecs/creds")) {
        const char *a = th_header(rq, "Authorization");
        f->container_calls++;
        if (!a || strcmp(a, "Bearer container-secret"))
            resp->status = 403;
        else
            th_body(resp, "%s", doc);
    } else if (!strcmp(rq->method, "PUT") && !strcmp(rq->target, "/latest/api/token")) {
        f->imds_token_calls++;
        if (th_header(rq, "X-aws-ec2-metadata-token-ttl-seconds"))
            th_body(resp, "imds-token-1");
        else
            resp->status = 400;
    } else if (!strncmp(rq->target, "/latest/meta-data/iam/security-credentials/", 43)) {
        const char *t = th_header(rq, "X-aws-ec2-metadata-token");
        if (!t || strcmp(t, "imds-token-1")) {
            resp->status = 401;
        } else if (!strcmp(rq->target + 43, "")) {
            th_body(resp, "synapse-gpu-worker");
        } else if (!strcmp(rq->target + 43, "synapse-gpu-worker")) {
            f->imds_calls++;
            th_body(resp, "%s", doc);
        } else {
            resp->status = 404;
        }
    } else {
        resp->status = 404;
    }
    pthread_mutex_unlock(&f->mu);
}

TEST(aws_pool_credentials_from_container_endpoint_and_imds)
{
    struct fake_creds fc;
    memset(&fc, 0, sizeof fc);
    pthread_mutex_init(&fc.mu, NULL);
    struct th_server *cs = th_start(creds_handler, &fc);
    struct fake_lambda *f = fake_lambda_new("ASIATEMP", "temp-secret", "temp/token+==");
    struct th_server *s = th_start(lambda_handler, f);
    char err[256], url[128];
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_SESSION_TOKEN");
    unsetenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    /* ECS: the full URI with its authorization token */
    snprintf(url, sizeof url, "%s/ecs/creds", th_url(cs));
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer container-secret", 1);
    struct syn_pool_backend *b = lambda_backend(th_url(s), 0, 60, NULL);
    CHECK_EQ_INT(b->start(b, 1, err, sizeof err), 1);
    CHECK_EQ_INT(b->start(b, 1, err, sizeof err), 1);
    CHECK_EQ_INT(fc.container_calls, 1); /* cached: it expires in 2099 */
    CHECK_EQ_INT(f->v.bad, 0);
    CHECK(strstr(f->v.last_signed_headers, "x-amz-security-token") != NULL);
    b->free(b);
    /* a wrong container token: no credentials, and the error says where it looked */
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer wrong", 1);
    b = lambda_backend(th_url(s), 0, 60, NULL);
    CHECK(b->start(b, 1, err, sizeof err) < 0);
    CHECK(strstr(err, "HTTP 403") != NULL);
    b->free(b);
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    /* EC2: IMDSv2 token, role name, role credentials */
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", th_url(cs), 1);
    b = lambda_backend(th_url(s), 0, 60, NULL);
    CHECK_EQ_INT(b->start(b, 1, err, sizeof err), 1);
    CHECK_EQ_INT(fc.imds_token_calls, 1);
    CHECK_EQ_INT(fc.imds_calls, 1);
    CHECK_EQ_INT(f->v.bad, 0);
    b->free(b);
    /* the environment wins over everything */
    setenv("AWS_ACCESS_KEY_ID", "ASIATEMP", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "temp-secret", 1);
    setenv("AWS_SESSION_TOKEN", "temp/token+==", 1);
    b = lambda_backend(th_url(s), 0, 60, NULL);
    CHECK_EQ_INT(b->start(b, 1, err, sizeof err), 1);
    CHECK_EQ_INT(fc.imds_calls, 1);
    CHECK_EQ_INT(f->v.bad, 0);
    b->free(b);
    th_stop(s);
    th_stop(cs);
}

/* ---- an Auto Scaling Query API ---- */

struct fake_inst {
    char id[32];
    char state[32];
    int protect;
};

struct fake_asg {
    pthread_mutex_t mu;
    struct verifier v;
    char group[64];
    int desired, min, max;
    struct fake_inst inst[32];
    int n_inst;
    int describes, sets, protects;
};

/* The value of form parameter k in body (decoded enough for our parameters), into out. */
static const char *form(const char *body, const char *k, char *out, size_t cap)
{
    size_t kl = strlen(k);
    for (const char *p = body; p && *p;) {
        if (!strncmp(p, k, kl) && p[kl] == '=') {
            const char *v = p + kl + 1;
            size_t n = strcspn(v, "&");
            size_t o = 0;
            for (size_t i = 0; i < n && o + 1 < cap; i++) {
                if (v[i] == '%' && i + 2 < n) {
                    char hex[3] = {v[i + 1], v[i + 2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    i += 2;
                } else {
                    out[o++] = v[i];
                }
            }
            out[o] = 0;
            return out;
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return NULL;
}

static void asg_error(struct th_response *resp, const char *code, const char *msg)
{
    resp->status = 400;
    th_body(resp,
            "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error>"
            "<Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error>"
            "<RequestId>r-1</RequestId></ErrorResponse>",
            code, msg);
}

static void asg_handler(void *ctx, const struct th_request *rq, struct th_response *resp)
{
    struct fake_asg *f = ctx;
    pthread_mutex_lock(&f->mu);
    char action[64] = "", ver[32] = "", name[128] = "", buf[64];
    form(rq->body, "Action", action, sizeof action);
    form(rq->body, "Version", ver, sizeof ver);
    const char *ct = th_header(rq, "Content-Type");
    if (!verify(&f->v, rq)) {
        deny(resp, &f->v, 1);
    } else if (strcmp(rq->method, "POST") || strcmp(ver, "2011-01-01") || !ct ||
               strncmp(ct, "application/x-www-form-urlencoded", 33)) {
        asg_error(resp, "InvalidAction", "expected a form-encoded POST of API version 2011-01-01");
    } else if (!strcmp(action, "DescribeAutoScalingGroups")) {
        f->describes++;
        form(rq->body, "AutoScalingGroupNames.member.1", name, sizeof name);
        char *x = NULL;
        size_t xl = 0;
        FILE *m = open_memstream(&x, &xl);
        fprintf(m, "<?xml version=\"1.0\"?>\n<DescribeAutoScalingGroupsResponse xmlns=\"http://"
                   "autoscaling.amazonaws.com/doc/2011-01-01/\"><DescribeAutoScalingGroupsResult>"
                   "<AutoScalingGroups>");
        if (!strcmp(name, f->group)) {
            fprintf(m,
                    "<member><AutoScalingGroupName>%s</AutoScalingGroupName>"
                    "<AvailabilityZones><member>us-east-1a</member></AvailabilityZones>"
                    "<Instances>",
                    f->group);
            for (int i = 0; i < f->n_inst; i++)
                fprintf(m,
                        "<member><InstanceId>%s</InstanceId><InstanceType>g6.xlarge</InstanceType>"
                        "<AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>%s"
                        "</LifecycleState><HealthStatus>Healthy</HealthStatus>"
                        "<LaunchTemplate><LaunchTemplateId>lt-1</LaunchTemplateId><Version>1"
                        "</Version></LaunchTemplate><ProtectedFromScaleIn>%s"
                        "</ProtectedFromScaleIn></member>",
                        f->inst[i].id, f->inst[i].state, f->inst[i].protect ? "true" : "false");
            fprintf(m,
                    "</Instances><MinSize>%d</MinSize><MaxSize>%d</MaxSize>"
                    "<DesiredCapacity>%d</DesiredCapacity>"
                    "<WarmPoolConfiguration><MinSize>7</MinSize></WarmPoolConfiguration>"
                    "<Tags/></member>",
                    f->min, f->max, f->desired);
        }
        fprintf(m, "</AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata>"
                   "<RequestId>r-2</RequestId></ResponseMetadata>"
                   "</DescribeAutoScalingGroupsResponse>");
        fclose(m);
        resp->body = x;
        resp->body_len = xl;
    } else if (!strcmp(action, "SetDesiredCapacity")) {
        f->sets++;
        form(rq->body, "AutoScalingGroupName", name, sizeof name);
        int want = form(rq->body, "DesiredCapacity", buf, sizeof buf) ? atoi(buf) : -1;
        if (strcmp(name, f->group)) {
            asg_error(resp, "ValidationError", "AutoScalingGroup name not found");
        } else if (want < f->min || want > f->max) {
            asg_error(resp, "ValidationError", "New SetDesiredCapacity value is above max");
        } else {
            f->desired = want;
            while (f->n_inst < want) { /* launches */
                struct fake_inst *in = &f->inst[f->n_inst];
                snprintf(in->id, sizeof in->id, "i-%017d", f->n_inst + 1);
                snprintf(in->state, sizeof in->state, "Pending");
                in->protect = 0;
                f->n_inst++;
            }
            th_body(resp, "<SetDesiredCapacityResponse><ResponseMetadata><RequestId>r-3"
                          "</RequestId></ResponseMetadata></SetDesiredCapacityResponse>");
        }
    } else if (!strcmp(action, "SetInstanceProtection")) {
        f->protects++;
        int on = form(rq->body, "ProtectedFromScaleIn", buf, sizeof buf) && !strcmp(buf, "true");
        for (int k = 1; k <= 50; k++) {
            char key[64], id[64];
            snprintf(key, sizeof key, "InstanceIds.member.%d", k);
            if (!form(rq->body, key, id, sizeof id)) break;
            for (int i = 0; i < f->n_inst; i++)
                if (!strcmp(f->inst[i].id, id)) f->inst[i].protect = on;
        }
        th_body(resp, "<SetInstanceProtectionResponse/>");
    } else {
        asg_error(resp, "InvalidAction", action);
    }
    pthread_mutex_unlock(&f->mu);
}

static struct syn_pool_backend *asg_backend(const char *url, const char *group,
                                            const struct syn_aws_creds *creds)
{
    struct syn_pool_asg_params p = {.group = group,
                                    .region = "eu-west-1",
                                    .endpoint = url,
                                    .describe_interval_s = 1e-9,
                                    .register_timeout_s = 600,
                                    .creds = creds};
    struct syn_pool_backend *b;
    char err[256];
    if (syn_pool_asg_new(&p, &b, err, sizeof err)) FAIL("asg backend: %s", err);
    return b;
}

TEST(aws_pool_asg_desired_capacity_and_scale_in_protection)
{
    struct fake_asg f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    f.v = (struct verifier){"AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL, "autoscaling", 0, 0, "", ""};
    snprintf(f.group, sizeof f.group, "synapse-gpu");
    f.max = 3;
    struct th_server *s = th_start(asg_handler, &f);
    struct syn_pool_backend *b = asg_backend(th_url(s), "synapse-gpu", &test_creds);
    CHECK_EQ_STR(b->name(b), "asg");
    char err[256];
    struct syn_pool_observation o;
    CHECK_EQ_INT(b->observe(b, NULL, 0, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.active, 0);
    CHECK_EQ_INT(o.starting, 0);
    CHECK_EQ_INT(o.limit, 3); /* MaxSize of the group, not the warm pool's MinSize */
    /* from zero: two instances */
    CHECK_EQ_INT(b->start(b, 2, err, sizeof err), 2);
    CHECK_EQ_INT(f.desired, 2);
    CHECK_EQ_INT(b->observe(b, NULL, 0, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.active, 2);
    CHECK_EQ_INT(o.starting, 2);
    /* they boot; their workers register; one is busy */
    snprintf(f.inst[0].state, sizeof f.inst[0].state, "InService");
    snprintf(f.inst[1].state, sizeof f.inst[1].state, "InService");
    char w0[64], w1[64];
    snprintf(w0, sizeof w0, "stories-%s", f.inst[0].id);
    snprintf(w1, sizeof w1, "stories-%s", f.inst[1].id);
    struct syn_pool_worker_view w[2] = {{w0, 3, 1}, {w1, 0, 1}};
    CHECK_EQ_INT(b->observe(b, w, 2, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.starting, 0);
    CHECK_EQ_INT(f.inst[0].protect, 1);
    CHECK_EQ_INT(f.inst[1].protect, 0);
    CHECK_EQ_INT(o.protected_now, 1);
    /* the busy one goes idle, the idle one gets work */
    w[0].running = 0;
    w[1].running = 5;
    CHECK_EQ_INT(b->observe(b, w, 2, &o, err, sizeof err), 0);
    CHECK_EQ_INT(f.inst[0].protect, 0);
    CHECK_EQ_INT(f.inst[1].protect, 1);
    int protects = f.protects;
    CHECK_EQ_INT(b->observe(b, w, 2, &o, err, sizeof err), 0);
    CHECK_EQ_INT(f.protects, protects); /* nothing changed: no calls */
    /* more than the group's maximum: capped, then nothing more */
    CHECK_EQ_INT(b->start(b, 5, err, sizeof err), 1);
    CHECK_EQ_INT(f.desired, 3);
    CHECK_EQ_INT(b->start(b, 1, err, sizeof err), 0);
    CHECK_EQ_INT(f.v.bad, 0);
    CHECK(f.v.checked >= 8);
    b->free(b);

    /* a group that does not exist */
    b = asg_backend(th_url(s), "no-such-group", &test_creds);
    CHECK(b->observe(b, NULL, 0, &o, err, sizeof err) < 0);
    CHECK(strstr(err, "no-such-group") != NULL);
    CHECK(b->start(b, 1, err, sizeof err) < 0);
    b->free(b);
    /* a bad signature: the service's error code comes through */
    struct syn_aws_creds wrong = {"AKIDTEST", "nope", NULL};
    b = asg_backend(th_url(s), "synapse-gpu", &wrong);
    CHECK(b->start(b, 1, err, sizeof err) < 0);
    CHECK(strstr(err, "SignatureDoesNotMatch") != NULL);
    b->free(b);
    /* and one configured from the environment, with credentials from there too */
    setenv("SYNAPSE_ASG_NAME", "synapse-gpu", 1);
    setenv("SYNAPSE_ASG_ENDPOINT", th_url(s), 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "c2VjcmV0LXRlc3Qta2V5", 1);
    unsetenv("AWS_SESSION_TOKEN");
    CHECK_EQ_INT(syn_pool_backend_from_env("asg", "stories", 60, &b, err, sizeof err), 0);
    int bad = f.v.bad;
    CHECK_EQ_INT(b->observe(b, w, 2, &o, err, sizeof err), 0);
    CHECK_EQ_INT(o.active, 3);
    CHECK_EQ_INT(f.v.bad, bad);
    b->free(b);
    th_stop(s);
}

/* ---- the pool manager driving them: backlog in Redis -> the policy -> a cloud backend ---- */

static void submit_jobs(const struct syn_test_redis *r, int n)
{
    struct syn_qclient *q;
    char err[256];
    if (syn_qclient_new(r->url, &q, err, sizeof err)) FAIL("redis: %s", err);
    CHECK_EQ_INT(syn_q_ensure_groups(q, "stories"), 0);
    for (int i = 0; i < n; i++) {
        struct syn_job j;
        syn_job_init(&j);
        snprintf(j.id, sizeof j.id, "job-%d", i);
        snprintf(j.model, sizeof j.model, "stories");
        syn_q_key_reply(j.reply, sizeof j.reply, "gw");
        j.prompt = strdup("Once upon a time");
        j.created_ms = syn_unix_ms();
        if (syn_q_submit(q, &j)) FAIL("submit");
        syn_job_release(&j);
    }
    syn_qclient_free(q);
}

static struct syn_workpool *cloud_pool(const struct syn_test_redis *r, const char *backend)
{
    struct syn_workpool_params wp = syn_workpool_default_params();
    wp.backend = backend;
    wp.model_name = "stories";
    wp.redis_url = r->url;
    wp.policy.min_warm = 0;
    wp.policy.max_workers = 3;
    wp.tick_ms = 50;
    struct syn_workpool *pool;
    char err[256];
    if (syn_workpool_new(&wp, &pool, err, sizeof err)) FAIL("workpool: %s", err);
    return pool;
}

TEST(aws_pool_workpool_scales_an_asg_from_zero)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct fake_asg f;
    memset(&f, 0, sizeof f);
    pthread_mutex_init(&f.mu, NULL);
    f.v = (struct verifier){"AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL, "autoscaling", 0, 0, "", ""};
    snprintf(f.group, sizeof f.group, "synapse-gpu");
    f.max = 3;
    struct th_server *s = th_start(asg_handler, &f);
    setenv("SYNAPSE_ASG_NAME", "synapse-gpu", 1);
    setenv("SYNAPSE_ASG_ENDPOINT", th_url(s), 1);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "c2VjcmV0LXRlc3Qta2V5", 1);
    unsetenv("AWS_SESSION_TOKEN");
    struct syn_workpool *pool = cloud_pool(&r, "asg");
    CHECK(syn_workpool_can_serve(pool)); /* nothing alive, but the backend can start workers */
    usleep(300 * 1000);
    CHECK_EQ_INT(f.desired, 0); /* no work, no instances */
    submit_jobs(&r, 3);
    for (int i = 0; i < 100 && f.desired == 0; i++) usleep(50 * 1000);
    CHECK_EQ_INT(f.desired, 1);
    /* while its worker boots the instance counts as starting: no second one for the same work */
    usleep(600 * 1000);
    CHECK_EQ_INT(f.desired, 1);
    struct syn_workpool_stats st;
    syn_workpool_stats(pool, &st);
    CHECK_EQ_INT(st.started_total, 1);
    CHECK_EQ_INT(st.starting, 1);
    CHECK_EQ_INT(f.v.bad, 0);
    syn_workpool_free(pool, 1);
    th_stop(s);
}

TEST(aws_pool_workpool_invokes_lambda_workers)
{
    struct syn_test_redis r;
    syn_test_redis_start(&r, 0);
    struct fake_lambda *f = fake_lambda_new("AKIDTEST", "c2VjcmV0LXRlc3Qta2V5", NULL);
    struct th_server *s = th_start(lambda_handler, f);
    setenv("SYNAPSE_LAMBDA_FUNCTION", "synapse-worker", 1);
    setenv("SYNAPSE_LAMBDA_ENDPOINT", th_url(s), 1);
    setenv("SYNAPSE_LAMBDA_MAX_CONCURRENCY", "2", 1);
    setenv("AWS_REGION", "us-east-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "c2VjcmV0LXRlc3Qta2V5", 1);
    unsetenv("AWS_SESSION_TOKEN");
    struct syn_workpool *pool = cloud_pool(&r, "lambda");
    submit_jobs(&r, 3);
    for (int i = 0; i < 100 && f->invocations == 0; i++) usleep(50 * 1000);
    usleep(600 * 1000);
    CHECK_EQ_INT(f->invocations, 1);
    CHECK_EQ_INT(f->v.bad, 0);
    json_t *pl = json_loads(f->last_payload, 0, NULL);
    CHECK_EQ_STR(json_string_value(json_object_get(pl, "model")), "stories");
    json_decref(pl);
    syn_workpool_free(pool, 1);
    /* an unknown backend is refused with the list of known ones */
    struct syn_workpool_params wp = syn_workpool_default_params();
    wp.backend = "kubernetes";
    wp.model_name = "stories";
    wp.redis_url = r.url;
    struct syn_workpool *bad;
    char err[256];
    CHECK(syn_workpool_new(&wp, &bad, err, sizeof err) < 0);
    CHECK(strstr(err, "lambda, asg") != NULL);
    th_stop(s);
}
