/*
 * SigV4 against the published test vectors: every case directory under ../shared/testdata/sigv4
 * (or $SYNAPSE_SIGV4_VECTORS) holds a request (request.txt), the signing context
 * (context.json: credentials, region, service, time, normalize, sign_body, expiry) and, for
 * header and query signing each, the canonical request, string to sign, signature and the signed
 * request. Every one of the four is compared byte for byte, in both modes. Then the properties the
 * transport and the test servers rely on: re-signing a signed request verifies it, a changed
 * byte does not, and the encoders.
 */
#include "harness.h"
#include "synapse/sigv4.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>

/* ---- reading a case ---- */

#define MAX_H 32

struct vcase {
    char method[16];
    char *target;                       /* request-line target, from malloc() */
    char path[1024];                    /* target before '?' */
    const char *query;                  /* after '?', or NULL (points into target) */
    char *names[MAX_H], *values[MAX_H]; /* raw, as in the file (values keep line folds) */
    int nh;
    char *body; /* from malloc(); "" when none */
    size_t body_len;
    struct syn_sigv4_params p;
    struct syn_aws_creds creds;
    json_t *ctx; /* keeps the strings above alive */
};

/* Parses request.txt: "METHOD TARGET HTTP/1.1", header lines (a line starting with white space
 * continues the previous value), an empty line, the body. */
static int parse_request(const char *text, struct vcase *vc)
{
    const char *eol = strchr(text, '\n');
    if (!eol) return -1;
    const char *sp1 = memchr(text, ' ', (size_t)(eol - text));
    const char *sp2 = eol;
    while (sp2 > text && *sp2 != ' ') sp2--;
    if (!sp1 || sp2 <= sp1) return -1;
    snprintf(vc->method, sizeof vc->method, "%.*s", (int)(sp1 - text), text);
    vc->target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    char *q = strchr(vc->target, '?');
    snprintf(vc->path, sizeof vc->path, "%.*s",
             (int)(q ? q - vc->target : (long)strlen(vc->target)), vc->target);
    vc->query = q ? q + 1 : NULL;
    const char *line = eol + 1;
    while (*line && *line != '\n') {
        const char *end = strchr(line, '\n');
        size_t l = end ? (size_t)(end - line) : strlen(line);
        if ((*line == ' ' || *line == '\t') && vc->nh > 0) {
            char *prev = vc->values[vc->nh - 1];
            size_t pl = strlen(prev);
            char *nv = malloc(pl + 1 + l + 1);
            memcpy(nv, prev, pl);
            nv[pl] = '\n';
            memcpy(nv + pl + 1, line, l);
            nv[pl + 1 + l] = 0;
            free(prev);
            vc->values[vc->nh - 1] = nv;
        } else {
            const char *colon = memchr(line, ':', l);
            if (!colon || vc->nh == MAX_H) return -1;
            vc->names[vc->nh] = strndup(line, (size_t)(colon - line));
            vc->values[vc->nh] = strndup(colon + 1, l - (size_t)(colon - line) - 1);
            vc->nh++;
        }
        line = end ? end + 1 : line + l;
    }
    if (*line == '\n') line++;
    vc->body = strdup(line);
    vc->body_len = strlen(line);
    return 0;
}

/* Reads a case; on failure says why on stderr and returns -1. */
static int load_case(const char *dir, struct vcase *vc)
{
    memset(vc, 0, sizeof *vc);
    char path[1400];
    snprintf(path, sizeof path, "%.1200s/context.json", dir);
    json_error_t je;
    vc->ctx = json_load_file(path, 0, &je);
    if (!vc->ctx) {
        fprintf(stderr, "  %s: %s\n", path, je.text);
        return -1;
    }
    json_t *cr = json_object_get(vc->ctx, "credentials");
    vc->creds.access_key_id = json_string_value(json_object_get(cr, "access_key_id"));
    vc->creds.secret_access_key = json_string_value(json_object_get(cr, "secret_access_key"));
    vc->creds.session_token = json_string_value(json_object_get(cr, "token"));
    vc->p.region = json_string_value(json_object_get(vc->ctx, "region"));
    vc->p.service = json_string_value(json_object_get(vc->ctx, "service"));
    const char *ts = json_string_value(json_object_get(vc->ctx, "timestamp"));
    vc->p.time_s = ts ? syn_sigv4_parse_time(ts) : -1;
    vc->p.normalize_path = json_is_true(json_object_get(vc->ctx, "normalize"));
    vc->p.sign_body = json_is_true(json_object_get(vc->ctx, "sign_body"));
    vc->p.omit_session_token = json_is_true(json_object_get(vc->ctx, "omit_session_token"));
    json_t *exp = json_object_get(vc->ctx, "expiration_in_seconds");
    vc->p.expires_s = exp ? (int)json_integer_value(exp) : 3600;
    if (!vc->p.region || !vc->p.service || vc->p.time_s <= 0 || !vc->creds.access_key_id) {
        fprintf(stderr, "  %s: region, service, timestamp or credentials missing\n", path);
        return -1;
    }
    snprintf(path, sizeof path, "%.1200s/request.txt", dir);
    char *text = syn_test_read_file(path, NULL);
    int rc = text ? parse_request(text, vc) : -1;
    free(text);
    if (rc) fprintf(stderr, "  %s: cannot parse it\n", path);
    return rc;
}

static void free_case(struct vcase *vc)
{
    for (int i = 0; i < vc->nh; i++) {
        free(vc->names[i]);
        free(vc->values[i]);
    }
    free(vc->target);
    free(vc->body);
    json_decref(vc->ctx);
}

/* ---- checking ---- */

/* Compares got with the file dir/name; prints both on a mismatch. Returns 1 if equal. A missing
 * file counts as a mismatch (a case that checks nothing must not pass silently). */
static int same(const char *dir, const char *name, const char *got)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *want = syn_test_read_file(path, NULL);
    int ok = want && got && strcmp(want, got) == 0;
    if (!ok)
        fprintf(stderr, "  %s: %s differs\n    expected: \"%s\"\n    got:      \"%s\"\n", dir, name,
                want ? want : "(missing file)", got ? got : "(null)");
    free(want);
    return ok;
}

/* Signs the case in one mode and checks the four files of that mode. Returns 1 if all match. */
static int check_mode(const char *dir, struct vcase *vc, int query)
{
    struct syn_sigv4_header h[MAX_H];
    for (int i = 0; i < vc->nh; i++) h[i] = (struct syn_sigv4_header){vc->names[i], vc->values[i]};
    struct syn_sigv4_request rq = {vc->method, vc->path, vc->query,   h,
                                   vc->nh,     vc->body, vc->body_len};
    struct syn_sigv4_params p = vc->p;
    p.query = query;
    struct syn_sigv4_result res;
    char err[256];
    if (syn_sigv4_sign(&p, &vc->creds, &rq, &res, err, sizeof err)) {
        fprintf(stderr, "  %s: signing failed: %s\n", dir, err);
        return 0;
    }
    const char *m = query ? "query" : "header";
    char name[64];
    int ok = 1;
    snprintf(name, sizeof name, "%s-canonical-request.txt", m);
    ok &= same(dir, name, res.canonical_request);
    snprintf(name, sizeof name, "%s-string-to-sign.txt", m);
    ok &= same(dir, name, res.string_to_sign);
    snprintf(name, sizeof name, "%s-signature.txt", m);
    ok &= same(dir, name, res.signature);

    /* the signed request, written the way the files write requests */
    size_t cap = 65536;
    char *sr = malloc(cap);
    size_t n = 0;
    if (query)
        n += (size_t)snprintf(sr + n, cap - n, "%s %s?%s%s%s HTTP/1.1\n", vc->method, vc->path,
                              vc->query ? vc->query : "", vc->query ? "&" : "", res.query_add);
    else
        n += (size_t)snprintf(sr + n, cap - n, "%s %s HTTP/1.1\n", vc->method, vc->target);
    for (int i = 0; i < vc->nh; i++)
        n += (size_t)snprintf(sr + n, cap - n, "%s:%s\n", vc->names[i], vc->values[i]);
    for (int i = 0; i < res.n_add; i++)
        n += (size_t)snprintf(sr + n, cap - n, "%s:%s\n", res.add[i].name, res.add[i].value);
    snprintf(sr + n, cap - n, "\n%s", vc->body);
    snprintf(name, sizeof name, "%s-signed-request.txt", m);
    ok &= same(dir, name, sr);
    free(sr);
    syn_sigv4_result_free(&res);
    return ok;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

TEST(sigv4_every_vector_header_and_query)
{
    const char *env = getenv("SYNAPSE_SIGV4_VECTORS");
    const char *root = env && *env ? env : syn_test_shared("testdata/sigv4");
    DIR *d = opendir(root);
    if (!d) SKIP("no SigV4 test vectors at %s (set SYNAPSE_SIGV4_VECTORS)", root);
    char *names[512];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 512) {
        if (de->d_name[0] == '.') continue;
        char ctx[1200];
        snprintf(ctx, sizeof ctx, "%s/%s/context.json", root, de->d_name);
        struct stat st;
        if (stat(ctx, &st) == 0) names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n == 0) FAIL("%s has no case directories (none with a context.json)", root);
    qsort(names, (size_t)n, sizeof *names, by_name);
    int passed = 0, header_ok = 0, query_ok = 0;
    for (int i = 0; i < n; i++) {
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        struct vcase vc;
        if (load_case(dir, &vc) == 0) {
            int h = check_mode(dir, &vc, 0), q = check_mode(dir, &vc, 1);
            header_ok += h;
            query_ok += q;
            passed += h && q;
        }
        free_case(&vc);
        free(names[i]);
    }
    fprintf(stderr,
            "  sigv4 vectors in %s: %d of %d cases pass (header signing %d, query "
            "signing %d)\n",
            root, passed, n, header_ok, query_ok);
    CHECK_EQ_INT(passed, n);
}

/* ---- properties ---- */

static const struct syn_aws_creds creds = {"AKIDEXAMPLE",
                                           "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};

/* Signs a Lambda Invoke request the way the transport does (header signing, body signed). */
static void sign_invoke(const char *body, int64_t t, struct syn_sigv4_result *res)
{
    struct syn_sigv4_header h[] = {{"Host", "lambda.us-east-1.amazonaws.com"},
                                   {"Content-Type", "application/json"},
                                   {"X-Amz-Invocation-Type", "Event"}};
    struct syn_sigv4_request rq = {
        "POST", "/2015-03-31/functions/synapse-worker/invocations", NULL, h, 3, body, strlen(body)};
    struct syn_sigv4_params p = {.region = "us-east-1",
                                 .service = "lambda",
                                 .time_s = t,
                                 .normalize_path = 1,
                                 .sign_body = 1};
    char err[256];
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, res, err, sizeof err), 0);
}

TEST(sigv4_resigning_verifies_and_a_changed_byte_does_not)
{
    struct syn_sigv4_result a, b, c;
    sign_invoke("{\"mode\":\"drain\"}", 1700000000, &a);
    sign_invoke("{\"mode\":\"drain\"}", 1700000000, &b);
    sign_invoke("{\"mode\":\"drair\"}", 1700000000, &c);
    CHECK_EQ_STR(a.signature, b.signature);
    CHECK(strcmp(a.signature, c.signature) != 0);
    CHECK_EQ_STR(a.add[0].name, "X-Amz-Date");
    CHECK_EQ_STR(a.add[0].value, "20231114T221320Z");
    CHECK_EQ_STR(a.add[1].name, "x-amz-content-sha256");
    CHECK_EQ_STR(a.add[2].name, "Authorization");
    CHECK(strstr(a.add[2].value, "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                                 "x-amz-invocation-type, Signature=") != NULL);
    CHECK(strstr(a.add[2].value, "Credential=AKIDEXAMPLE/20231114/us-east-1/lambda/aws4_request") !=
          NULL);
    /* a receiver passes the headers it got, our own additions included: they are replaced by
     * freshly computed ones, so the signature comes out the same */
    struct syn_sigv4_header h[] = {
        {"Host", "lambda.us-east-1.amazonaws.com"}, {"Content-Type", "application/json"},
        {"X-Amz-Invocation-Type", "Event"},         {"X-Amz-Date", a.add[0].value},
        {"x-amz-content-sha256", a.add[1].value},   {"Authorization", a.add[2].value}};
    const char *body = "{\"mode\":\"drain\"}";
    struct syn_sigv4_request rq = {
        "POST", "/2015-03-31/functions/synapse-worker/invocations", NULL, h, 6, body, strlen(body)};
    struct syn_sigv4_params p = {.region = "us-east-1",
                                 .service = "lambda",
                                 .time_s = syn_sigv4_parse_time(a.add[0].value),
                                 .normalize_path = 1,
                                 .sign_body = 1};
    struct syn_sigv4_result v;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, &v, NULL, 0), 0);
    CHECK_EQ_STR(v.signature, a.signature);
    /* another region or another second is another signature */
    p.region = "eu-west-1";
    struct syn_sigv4_result w;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, &w, NULL, 0), 0);
    CHECK(strcmp(w.signature, a.signature) != 0);
    syn_sigv4_result_free(&a);
    syn_sigv4_result_free(&b);
    syn_sigv4_result_free(&c);
    syn_sigv4_result_free(&v);
    syn_sigv4_result_free(&w);
}

TEST(sigv4_session_token_signed_or_omitted)
{
    struct syn_aws_creds tc = {"AKID", "SECRET", "TOKEN/with+chars="};
    struct syn_sigv4_header h[] = {{"Host", "autoscaling.us-east-1.amazonaws.com"}};
    struct syn_sigv4_request rq = {"POST", "/", NULL, h, 1, "Action=X", 8};
    struct syn_sigv4_params p = {
        .region = "us-east-1", .service = "autoscaling", .time_s = 1700000000};
    struct syn_sigv4_result r;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &tc, &rq, &r, NULL, 0), 0);
    CHECK_EQ_STR(r.add[0].name, "X-Amz-Security-Token");
    CHECK_EQ_STR(r.add[0].value, "TOKEN/with+chars=");
    CHECK(strstr(r.canonical_request, "x-amz-security-token:TOKEN/with+chars=\n") != NULL);
    syn_sigv4_result_free(&r);
    p.omit_session_token = 1;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &tc, &rq, &r, NULL, 0), 0);
    CHECK_EQ_STR(r.add[0].name, "X-Amz-Security-Token"); /* still sent, just not signed */
    CHECK(strstr(r.canonical_request, "x-amz-security-token") == NULL);
    syn_sigv4_result_free(&r);
    p.omit_session_token = 0;
    p.query = 1;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &tc, &rq, &r, NULL, 0), 0);
    CHECK(strstr(r.query_add, "&X-Amz-Security-Token=TOKEN%2Fwith%2Bchars%3D&X-Amz-Signature=") !=
          NULL);
    CHECK_EQ_INT(r.n_add, 0);
    syn_sigv4_result_free(&r);
}

TEST(sigv4_rejects_what_cannot_be_signed)
{
    char err[256];
    struct syn_sigv4_result r;
    struct syn_sigv4_header nohost[] = {{"Content-Type", "text/plain"}};
    struct syn_sigv4_request rq = {"GET", "/", NULL, nohost, 1, NULL, 0};
    struct syn_sigv4_params p = {.region = "us-east-1", .service = "lambda", .time_s = 1};
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, &r, err, sizeof err), -1);
    CHECK(strstr(err, "Host") != NULL);
    struct syn_sigv4_header bad[] = {{"Host", "x"}, {"Bad Name", "v"}};
    rq.headers = bad;
    rq.n_headers = 2;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, &r, err, sizeof err), -1);
    CHECK(strstr(err, "Bad Name") != NULL);
    rq.n_headers = 1;
    struct syn_aws_creds none = {NULL, NULL, NULL};
    CHECK_EQ_INT(syn_sigv4_sign(&p, &none, &rq, &r, err, sizeof err), -1);
    CHECK(strstr(err, "credentials") != NULL);
    p.region = NULL;
    CHECK_EQ_INT(syn_sigv4_sign(&p, &creds, &rq, &r, err, sizeof err), -1);
    syn_sigv4_result_free(&r); /* safe after a failure */
}

TEST(sigv4_encoders_and_time)
{
    char buf[128];
    CHECK_EQ_INT(syn_sigv4_uri_encode(buf, sizeof buf, "a b/c~d", 7, 1), 9);
    CHECK_EQ_STR(buf, "a%20b/c~d");
    syn_sigv4_uri_encode(buf, sizeof buf, "a b/c~d", 7, 0);
    CHECK_EQ_STR(buf, "a%20b%2Fc~d");
    syn_sigv4_uri_encode(buf, sizeof buf, "\xe1\x88\xb4", 3, 0);
    CHECK_EQ_STR(buf, "%E1%88%B4");
    CHECK_EQ_INT(syn_sigv4_uri_encode(buf, 4, "::::", 4, 0), 12); /* like snprintf */
    CHECK_EQ_STR(buf, "%3A");
    CHECK_EQ_INT(syn_sigv4_parse_time("2015-08-30T12:36:00Z"), 1440938160);
    CHECK_EQ_INT(syn_sigv4_parse_time("20150830T123600Z"), 1440938160);
    CHECK_EQ_INT(syn_sigv4_parse_time("2015-13-30T12:36:00Z"), -1);
    CHECK_EQ_INT(syn_sigv4_parse_time("yesterday"), -1);
    char d[17];
    syn_sigv4_amz_date(1440938160, d);
    CHECK_EQ_STR(d, "20150830T123600Z");
    char h[65];
    syn_sha256_hex("", 0, h);
    CHECK_EQ_STR(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
