# Terraform CLI configuration for checking Synapse's modules offline. check.sh renders it into a
# temporary directory with @MIRROR@ replaced by the directory that holds
# registry.terraform.io/hashicorp/aws/<version>/<os_arch>/ (found on the machine or given in
# SYNAPSE_TF_MIRROR), and points TF_CLI_CONFIG_FILE at the result. The rendered file, the
# mirror's path and the .terraform directories never land in the repository.
provider_installation {
  filesystem_mirror {
    path    = "@MIRROR@"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
