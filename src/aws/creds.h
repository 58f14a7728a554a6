/*
 * Where AWS credentials come from, in the order the AWS SDKs use for the places Synapse runs:
 *
 *   1. the environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (Lambda sets
 *      these for the function's role; also a developer's shell);
 *   2. the ECS container endpoint: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (relative to
 *      http://169.254.170.2) or AWS_CONTAINER_CREDENTIALS_FULL_URI, with
 *      AWS_CONTAINER_AUTHORIZATION_TOKEN as its Authorization header (the gateway on Fargate);
 *   3. the EC2 instance metadata service, IMDSv2 (a session token first, then the instance
 *      role's credentials), at AWS_EC2_METADATA_SERVICE_ENDPOINT or http://169.254.169.254;
 *      off when AWS_EC2_METADATA_DISABLED=true (GPU workers, a gateway on EC2).
 *
 * Temporary credentials are cached and fetched again five minutes before they expire. One
 * provider belongs to one thread (a pool backend's): no locking.
 */
#ifndef SYN_AWS_CREDS_H
#define SYN_AWS_CREDS_H

#include <stddef.h>
#include <stdint.h>

#include "synapse/sigv4.h"

struct syn_aws_credsrc {
    char access_key_id[128];
    char secret_access_key[128];
    char session_token[4096];
    int64_t expires_unix; /* 0 = does not expire (environment) */
    const char *source;   /* "environment", "container", "imds"; NULL before the first fetch */
};

/* Fills out with credentials valid for at least five more minutes (strings point into src and
 * stay valid until the next call). Returns 0, or SYN_ENOTFOUND when no source has any, SYN_EIO
 * when a source answered badly, with a message. */
int syn_aws_creds_get(struct syn_aws_credsrc *src, struct syn_aws_creds *out, char *err,
                      size_t errlen);

/* The region: AWS_REGION, then AWS_DEFAULT_REGION, else NULL. */
const char *syn_aws_region(void);

#endif
