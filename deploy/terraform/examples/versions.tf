terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
  # No backend block: state is local. For a team, add an S3 backend here.
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { Project = "synapse", Deployment = var.name }
  }
}
