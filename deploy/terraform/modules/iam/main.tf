# IAM with least privilege: one role per kind of principal, each allowed exactly the calls its
# code makes, on exactly the resources it touches.
#
#   task execution (ECS agent)  pull the image, write the gateway's logs, read the Redis token
#   gateway task (pool manager) lambda:InvokeFunction on the worker function; SetDesiredCapacity
#                               and SetInstanceProtection on the GPU group; Describe (which has
#                               no resource-level permissions)
#   GPU instance                read the model object and the Redis token, pull the image, write
#                               its logs, and terminate itself in its group when idle
#   Lambda worker               write its logs, manage its VPC network interfaces
#
# Auto Scaling group ARNs carry a generated id, so policies name the group by its name:
# arn:aws:autoscaling:<region>:<account>:autoScalingGroup:*:autoScalingGroupName/<name>.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account   = data.aws_caller_identity.current.account_id
  partition = data.aws_partition.current.partition
  asg_arn   = "arn:${local.partition}:autoscaling:${var.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${var.asg_name}"
  fn_arn    = var.lambda_function_name == null ? null : "arn:${local.partition}:lambda:${var.region}:${local.account}:function:${var.lambda_function_name}"
  model_arn = "arn:${local.partition}:s3:::${var.model_bucket}/${var.model_key}"
}

# ---- ECS task execution ----

data "aws_iam_policy_document" "ecs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.gateway_log_group_arn}:*"]
  }
  statement {
    sid       = "RedisToken"
    actions   = ["ssm:GetParameters"]
    resources = [var.redis_token_parameter_arn]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "synapse-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---- the gateway / pool manager task ----

data "aws_iam_policy_document" "gateway" {
  statement {
    sid       = "DescribeGroup"
    actions   = ["autoscaling:DescribeAutoScalingGroups"]
    resources = ["*"]
  }
  statement {
    sid       = "ScaleGpuWorkers"
    actions   = ["autoscaling:SetDesiredCapacity", "autoscaling:SetInstanceProtection"]
    resources = [local.asg_arn]
  }
  dynamic "statement" {
    for_each = local.fn_arn == null ? [] : [local.fn_arn]
    content {
      sid       = "InvokeLambdaWorkers"
      actions   = ["lambda:InvokeFunction"]
      resources = [statement.value, "${statement.value}:*"]
    }
  }
}

resource "aws_iam_role" "gateway" {
  name               = "${var.name}-gateway"
  assume_role_policy = data.aws_iam_policy_document.ecs_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "gateway" {
  name   = "synapse-pool"
  role   = aws_iam_role.gateway.id
  policy = data.aws_iam_policy_document.gateway.json
}

# ---- GPU instances ----

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "gpu" {
  statement {
    sid       = "ReadModel"
    actions   = ["s3:GetObject"]
    resources = [local.model_arn]
  }
  statement {
    sid       = "RedisToken"
    actions   = ["ssm:GetParameter"]
    resources = [var.redis_token_parameter_arn]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    resources = [var.ecr_repository_arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.workers_gpu_log_group_arn}:*"]
  }
  statement {
    sid       = "LeaveGroupWhenIdle"
    actions   = ["autoscaling:TerminateInstanceInAutoScalingGroup"]
    resources = [local.asg_arn]
  }
}

resource "aws_iam_role" "gpu" {
  name               = "${var.name}-gpu-worker"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "gpu" {
  name   = "synapse-gpu-worker"
  role   = aws_iam_role.gpu.id
  policy = data.aws_iam_policy_document.gpu.json
}

resource "aws_iam_instance_profile" "gpu" {
  name = "${var.name}-gpu-worker"
  role = aws_iam_role.gpu.name
  tags = var.tags
}

# ---- Lambda workers ----

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "lambda" {
  count = var.lambda_function_name == null ? 0 : 1
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${var.workers_lambda_log_group_arn}:*"]
  }
  statement {
    sid = "VpcNetworkInterfaces"
    actions = [
      "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
      "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role" "lambda" {
  count              = var.lambda_function_name == null ? 0 : 1
  name               = "${var.name}-lambda-worker"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "lambda" {
  count  = var.lambda_function_name == null ? 0 : 1
  name   = "synapse-lambda-worker"
  role   = aws_iam_role.lambda[0].id
  policy = data.aws_iam_policy_document.lambda[0].json
}
