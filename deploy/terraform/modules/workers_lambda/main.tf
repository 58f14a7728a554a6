# Optional CPU workers on AWS Lambda: a container-image function running `synapse lambda`
# (deploy/docker/Dockerfile.lambda, the model baked into the image). Lambda has no GPUs, so this
# is for small models. The pool manager's lambda backend invokes it asynchronously with a drain
# event; each invocation is one worker until it is idle or its deadline nears. The function sits
# in the private subnets to reach Redis.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

resource "aws_lambda_function" "this" {
  function_name                  = var.function_name
  role                           = var.role_arn
  package_type                   = "Image"
  image_uri                      = var.image_uri
  architectures                  = ["x86_64"]
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_s
  reserved_concurrent_executions = var.max_concurrency
  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = [var.security_group_id]
  }
  environment {
    variables = {
      SYNAPSE_MODEL              = var.model_path
      SYNAPSE_MODEL_NAME         = var.model_name
      SYNAPSE_REDIS_TLS_ENDPOINT = var.redis_tls_endpoint
      SYNAPSE_REDIS_AUTH_TOKEN   = var.redis_auth_token
      SYNAPSE_MAX_SEQS           = tostring(var.max_seqs)
      SYNAPSE_IDLE_TIMEOUT       = tostring(var.idle_timeout_s)
    }
  }
  logging_config {
    log_format = "Text"
    log_group  = var.log_group
  }
  tags = var.tags
}

# A drain event that waited or failed is not worth retrying: the pool manager starts fresh
# invocations for the backlog it sees.
resource "aws_lambda_function_event_invoke_config" "this" {
  function_name                = aws_lambda_function.this.function_name
  maximum_retry_attempts       = 0
  maximum_event_age_in_seconds = 60
}
