/*
 * The Terraform in deploy/terraform, checked offline by deploy/terraform/check.sh:
 * `terraform fmt -check -recursive`, then `terraform init -backend=false` and `terraform validate`
 * of the example root module in a temporary copy, with the hashicorp/aws provider from a local
 * filesystem mirror (found on the machine or named by SYNAPSE_TF_MIRROR). Without terraform or
 * without a mirror the script says why and the test is skipped. Init and validate load the
 * 700 MB provider: this takes 10-20 s.
 */
#include "harness.h"

TEST_TIMEOUT(terraform_fmt_init_validate_offline, 300)
{
    const char *root = getenv("SYNAPSE_ROOT");
    if (!root || !*root) root = ".";
    char *out = NULL;
    int rc = syn_test_sh(&out, "'%s/deploy/terraform/check.sh' 2>&1", root);
    fprintf(stderr, "%s", out ? out : "");
    if (rc == 77) {
        const char *why = out ? strstr(out, "skipped: ") : NULL;
        SKIP("%s", why ? why + 9 : "terraform check skipped");
    }
    if (rc != 0) FAIL("deploy/terraform/check.sh exited with %d (output above)", rc);
    CHECK(out && strstr(out, "The configuration is valid") != NULL);
    free(out);
}
