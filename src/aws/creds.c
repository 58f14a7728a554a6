/* The AWS credential chain (see creds.h): environment, ECS container endpoint, EC2 IMDSv2. */
#include "aws/creds.h"

#include "aws/http.h"
#include "synapse/error.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REFRESH_MARGIN_S 300

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

const char *syn_aws_region(void)
{
    const char *r = env("AWS_REGION");
    return r ? r : env("AWS_DEFAULT_REGION");
}

/* Takes AccessKeyId, SecretAccessKey, Token, Expiration from a credentials JSON document (the
 * same shape from ECS and from IMDS). */
static int from_json(struct syn_aws_credsrc *src, const char *body, const char *what, char *err,
                     size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(body, 0, &je);
    const char *ak = json_string_value(json_object_get(j, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(j, "SecretAccessKey"));
    const char *tok = json_string_value(json_object_get(j, "Token"));
    const char *exp = json_string_value(json_object_get(j, "Expiration"));
    if (!ak || !sk || strlen(ak) >= sizeof src->access_key_id ||
        strlen(sk) >= sizeof src->secret_access_key ||
        (tok && strlen(tok) >= sizeof src->session_token)) {
        json_decref(j);
        return syn_seterr(err, errlen, SYN_EIO,
                          "aws credentials: %s did not return AccessKeyId and SecretAccessKey",
                          what);
    }
    snprintf(src->access_key_id, sizeof src->access_key_id, "%s", ak);
    snprintf(src->secret_access_key, sizeof src->secret_access_key, "%s", sk);
    snprintf(src->session_token, sizeof src->session_token, "%s", tok ? tok : "");
    src->expires_unix = exp ? syn_sigv4_parse_time(exp) : 0;
    if (src->expires_unix < 0) src->expires_unix = (int64_t)time(NULL) + 900;
    json_decref(j);
    return SYN_OK;
}

static int from_container(struct syn_aws_credsrc *src, char *err, size_t errlen)
{
    char url[2048];
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    if (rel)
        snprintf(url, sizeof url, "http://169.254.170.2%s", rel);
    else
        snprintf(url, sizeof url, "%s", full);
    const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
    char auth[4200];
    const char *hdr[1];
    int nh = 0;
    if (tok && !rel) {
        snprintf(auth, sizeof auth, "Authorization: %s", tok);
        hdr[nh++] = auth;
    }
    struct syn_http_req rq = {.method = "GET",
                              .url = url,
                              .headers = hdr,
                              .n_headers = nh,
                              .timeout_ms = 5000,
                              .connect_timeout_ms = 2000};
    struct syn_http_resp r = {0};
    int rc = syn_http_do(NULL, &rq, &r, err, errlen);
    if (rc == SYN_OK && r.status != 200)
        rc = syn_seterr(err, errlen, SYN_EIO, "aws credentials: %s answered HTTP %ld", url,
                        r.status);
    if (rc == SYN_OK) rc = from_json(src, r.body, url, err, errlen);
    syn_http_resp_free(&r);
    if (rc == SYN_OK) src->source = "container";
    return rc;
}

static int from_imds(struct syn_aws_credsrc *src, char *err, size_t errlen)
{
    const char *base = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (!base) base = "http://169.254.169.254";
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/') bl--;
    char url[1024], tokhdr[600], token[512];
    struct syn_http_resp r = {0};
    /* IMDSv2: a session token first (PUT), then the role name, then its credentials */
    snprintf(url, sizeof url, "%.*s/latest/api/token", (int)bl, base);
    const char *put_hdr[] = {"X-aws-ec2-metadata-token-ttl-seconds: 21600"};
    struct syn_http_req rq = {.method = "PUT",
                              .url = url,
                              .headers = put_hdr,
                              .n_headers = 1,
                              .timeout_ms = 2000,
                              .connect_timeout_ms = 1000};
    int rc = syn_http_do(NULL, &rq, &r, err, errlen);
    if (rc == SYN_OK && (r.status != 200 || r.body_len == 0 || r.body_len >= sizeof token))
        rc = syn_seterr(err, errlen, SYN_EIO, "aws credentials: IMDS token request: HTTP %ld",
                        r.status);
    if (rc) {
        syn_http_resp_free(&r);
        return rc;
    }
    snprintf(token, sizeof token, "%s", r.body);
    syn_http_resp_free(&r);
    snprintf(tokhdr, sizeof tokhdr, "X-aws-ec2-metadata-token: %s", token);
    const char *get_hdr[] = {tokhdr};
    snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/", (int)bl, base);
    struct syn_http_req g = {.method = "GET",
                             .url = url,
                             .headers = get_hdr,
                             .n_headers = 1,
                             .timeout_ms = 2000,
                             .connect_timeout_ms = 1000};
    rc = syn_http_do(NULL, &g, &r, err, errlen);
    if (rc == SYN_OK && (r.status != 200 || r.body_len == 0 || r.body_len > 200))
        rc = syn_seterr(err, errlen, SYN_ENOTFOUND,
                        "aws credentials: the instance has no IAM role (IMDS: HTTP %ld)", r.status);
    if (rc) {
        syn_http_resp_free(&r);
        return rc;
    }
    char role[256];
    snprintf(role, sizeof role, "%.*s", (int)strcspn(r.body, "\r\n"), r.body);
    syn_http_resp_free(&r);
    snprintf(url, sizeof url, "%.*s/latest/meta-data/iam/security-credentials/%s", (int)bl, base,
             role);
    rc = syn_http_do(NULL, &g, &r, err, errlen);
    if (rc == SYN_OK && r.status != 200)
        rc = syn_seterr(err, errlen, SYN_EIO, "aws credentials: IMDS role '%s': HTTP %ld", role,
                        r.status);
    if (rc == SYN_OK) rc = from_json(src, r.body, "IMDS", err, errlen);
    syn_http_resp_free(&r);
    if (rc == SYN_OK) src->source = "imds";
    return rc;
}

int syn_aws_creds_get(struct syn_aws_credsrc *src, struct syn_aws_creds *out, char *err,
                      size_t errlen)
{
    int64_t now = (int64_t)time(NULL);
    int fresh =
        src->source && (src->expires_unix == 0 || src->expires_unix - now > REFRESH_MARGIN_S);
    int rc = SYN_OK;
    if (!fresh) {
        const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
        const char *tok = env("AWS_SESSION_TOKEN");
        if (ak && sk) {
            snprintf(src->access_key_id, sizeof src->access_key_id, "%s", ak);
            snprintf(src->secret_access_key, sizeof src->secret_access_key, "%s", sk);
            snprintf(src->session_token, sizeof src->session_token, "%s", tok ? tok : "");
            src->expires_unix = 0;
            src->source = "environment";
        } else if (env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") ||
                   env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
            rc = from_container(src, err, errlen);
        } else {
            const char *off = env("AWS_EC2_METADATA_DISABLED");
            if (off && !strcmp(off, "true"))
                rc = syn_seterr(err, errlen, SYN_ENOTFOUND,
                                "aws credentials: none in the environment, no container "
                                "endpoint, and instance metadata is disabled");
            else
                rc = from_imds(src, err, errlen);
        }
    }
    if (rc) {
        src->source = NULL;
        return rc;
    }
    out->access_key_id = src->access_key_id;
    out->secret_access_key = src->secret_access_key;
    out->session_token = src->session_token[0] ? src->session_token : NULL;
    return SYN_OK;
}
