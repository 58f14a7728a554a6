# CloudWatch log groups, one per component, with a retention so that logs do not grow (and cost)
# without end. Lambda writes to /aws/lambda/<function>, which must exist under exactly that name.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

resource "aws_cloudwatch_log_group" "gateway" {
  name              = "/synapse/${var.name}/gateway"
  retention_in_days = var.retention_days
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "workers_gpu" {
  name              = "/synapse/${var.name}/workers-gpu"
  retention_in_days = var.retention_days
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "workers_lambda" {
  count             = var.lambda_function_name == null ? 0 : 1
  name              = "/aws/lambda/${var.lambda_function_name}"
  retention_in_days = var.retention_days
  tags              = var.tags
}
