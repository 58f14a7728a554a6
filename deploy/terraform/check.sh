#!/usr/bin/env bash
# Checks Synapse's Terraform offline: `terraform fmt -check -recursive` over deploy/terraform, then
# `terraform init -backend=false` and `terraform validate` of the example root module, in a
# temporary copy (no .terraform or lock file lands in the repository), with providers taken only
# from a local filesystem mirror of hashicorp/aws.
#
#   SYNAPSE_TF_MIRROR=DIR   the mirror (the directory that holds registry.terraform.io/); else
#                           the usual places are looked at, then `find / -maxdepth 5`.
#   TERRAFORM=PATH          the terraform binary (default: terraform on PATH)
#
# Exit status: 0 all passed, 1 a check failed, 77 skipped (no terraform, or no mirror), with the
# reason on stderr.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tf="${TERRAFORM:-terraform}"
provider_version="5.100.0"

if ! command -v "$tf" >/dev/null 2>&1; then
    echo "terraform check skipped: no terraform binary ('$tf' is not on PATH)" >&2
    exit 77
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/synapse-tf-XXXXXX")"
trap 'rm -rf "$work"' EXIT
# our own CLI configuration only, even for fmt: never whatever ~/.terraformrc or
# TF_CLI_CONFIG_FILE say
: > "$work/terraformrc"
export TF_CLI_CONFIG_FILE="$work/terraformrc"
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 TF_INPUT=0
unset TF_PLUGIN_CACHE_DIR

echo "== $("$tf" version | head -n 1)"
echo "== terraform fmt -check -recursive"
if ! "$tf" fmt -check -recursive -diff "$here"; then
    echo "terraform fmt: the files listed above are not formatted (run: terraform fmt -recursive deploy/terraform)" >&2
    exit 1
fi

# the mirror: given, or in one of the usual places, or found
has_aws() { [ -d "$1/registry.terraform.io/hashicorp/aws" ]; }
mirror="${SYNAPSE_TF_MIRROR:-}"
if [ -n "$mirror" ] && ! has_aws "$mirror"; then
    echo "terraform check skipped: SYNAPSE_TF_MIRROR=$mirror has no registry.terraform.io/hashicorp/aws" >&2
    exit 77
fi
if [ -z "$mirror" ]; then
    for d in /opt/tf-plugins /usr/share/terraform/plugins /usr/local/share/terraform/plugins \
             "${HOME:-/nonexistent}/.terraform.d/plugins" "${XDG_DATA_HOME:-${HOME:-/nonexistent}/.local/share}/terraform/plugins"; do
        if has_aws "$d"; then mirror="$d"; break; fi
    done
fi
if [ -z "$mirror" ]; then
    found="$(find / -maxdepth 5 -type d -path '*registry.terraform.io/hashicorp/aws' \
             -not -path '/proc/*' 2>/dev/null | head -n 1)"
    [ -n "$found" ] && mirror="${found%/registry.terraform.io/hashicorp/aws}"
fi
if [ -z "$mirror" ]; then
    echo "terraform check skipped: no local mirror of hashicorp/aws found (set SYNAPSE_TF_MIRROR); fmt passed, init and validate need the provider and there is no network" >&2
    exit 77
fi
if [ ! -d "$mirror/registry.terraform.io/hashicorp/aws/$provider_version" ] &&
   ! ls "$mirror/registry.terraform.io/hashicorp/aws/"*"_${provider_version}_"*.zip >/dev/null 2>&1; then
    echo "terraform check skipped: the mirror at $mirror has no hashicorp/aws $provider_version" >&2
    exit 77
fi
echo "== provider mirror: $mirror"

sed "s|@MIRROR@|$mirror|" "$here/terraformrc.tpl" > "$work/terraformrc"
mkdir -p "$work/tf"
cp -r "$here/modules" "$here/examples" "$work/tf/"

status=0
for root in "$work/tf/examples"; do
    name="${root#"$work/tf/"}"
    echo "== $name: terraform init -backend=false"
    start=$(date +%s)
    if ! (cd "$root" && "$tf" init -backend=false -input=false -no-color >"$work/init.log" 2>&1); then
        cat "$work/init.log" >&2
        echo "terraform init failed for $name" >&2
        status=1
        continue
    fi
    echo "== $name: terraform validate"
    if ! (cd "$root" && "$tf" validate -no-color); then
        echo "terraform validate failed for $name" >&2
        status=1
    fi
    echo "== $name: init + validate took $(( $(date +%s) - start )) s"
done
exit $status
