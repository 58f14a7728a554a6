# Synapse on AWS, composed from the modules with defaults for a first deployment:
#
#   internet -> [API Gateway REST API, optional, streaming] -> ALB -> gateway tasks (Fargate)
#                                                                       |  XADD / XREAD
#   pool manager task (Fargate, one) -- SetDesiredCapacity / Invoke --> ElastiCache Redis 7 (TLS)
#        |                                                              ^  XREADGROUP / XADD
#        +--> GPU workers: Auto Scaling group, min 0 ------------------+
#        +--> CPU workers: Lambda function (optional) -----------------+
#
# See docs/deploy-aws.md for the walkthrough and the cost model.

locals {
  lambda_function_name = var.lambda_workers ? "${var.name}-worker" : null
  image                = "${aws_ecr_repository.synapse.repository_url}:${var.image_tag}"
  lambda_image         = "${aws_ecr_repository.lambda.repository_url}:${var.image_tag}"
  asg_name             = "${var.name}-gpu"
}

resource "aws_ecr_repository" "synapse" {
  name                 = var.name
  image_tag_mutability = "MUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  force_delete = var.force_delete_images
}

resource "aws_ecr_repository" "lambda" {
  name                 = "${var.name}-lambda"
  image_tag_mutability = "MUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  force_delete = var.force_delete_images
}

module "network" {
  source        = "../modules/network"
  name          = var.name
  region        = var.region
  allowed_cidrs = var.allowed_cidrs
}

module "logs" {
  source               = "../modules/logs"
  name                 = var.name
  lambda_function_name = local.lambda_function_name
  retention_days       = var.log_retention_days
}

module "redis" {
  source            = "../modules/redis"
  name              = var.name
  subnet_ids        = module.network.private_subnet_ids
  security_group_id = module.network.redis_security_group_id
  node_type         = var.redis_node_type
  replicas          = var.redis_replicas
  auth_token        = var.redis_auth_token
}

module "iam" {
  source                       = "../modules/iam"
  name                         = var.name
  region                       = var.region
  ecr_repository_arn           = aws_ecr_repository.synapse.arn
  gateway_log_group_arn        = module.logs.gateway_log_group_arn
  workers_gpu_log_group_arn    = module.logs.workers_gpu_log_group_arn
  workers_lambda_log_group_arn = module.logs.workers_lambda_log_group_arn
  redis_token_parameter_arn    = module.redis.auth_token_parameter_arn
  model_bucket                 = var.model_bucket
  model_key                    = var.model_key
  asg_name                     = local.asg_name
  lambda_function_name         = local.lambda_function_name
}

module "workers_gpu" {
  source                     = "../modules/workers_gpu"
  name                       = local.asg_name
  region                     = var.region
  instance_type              = var.gpu_instance_type
  spot                       = var.gpu_spot
  max_size                   = var.gpu_max_instances
  subnet_ids                 = module.network.private_subnet_ids
  security_group_id          = module.network.workers_security_group_id
  instance_profile_name      = module.iam.gpu_instance_profile_name
  image                      = local.image
  model_bucket               = var.model_bucket
  model_key                  = var.model_key
  model_name                 = var.model_name
  redis_tls_endpoint         = module.redis.tls_endpoint
  redis_token_parameter_name = module.redis.auth_token_parameter_name
  log_group                  = module.logs.workers_gpu_log_group
  idle_timeout_s             = var.worker_idle_timeout_s
}

module "workers_lambda" {
  source             = "../modules/workers_lambda"
  count              = var.lambda_workers ? 1 : 0
  function_name      = local.lambda_function_name
  role_arn           = module.iam.lambda_role_arn
  image_uri          = local.lambda_image
  model_name         = var.model_name
  memory_mb          = var.lambda_memory_mb
  max_concurrency    = var.lambda_max_concurrency
  subnet_ids         = module.network.private_subnet_ids
  security_group_id  = module.network.workers_security_group_id
  redis_tls_endpoint = module.redis.tls_endpoint
  redis_auth_token   = var.redis_auth_token
  log_group          = "/aws/lambda/${local.lambda_function_name}"
  depends_on         = [module.logs]
}

module "gateway" {
  source                    = "../modules/gateway"
  name                      = var.name
  region                    = var.region
  vpc_id                    = module.network.vpc_id
  public_subnet_ids         = module.network.public_subnet_ids
  private_subnet_ids        = module.network.private_subnet_ids
  lb_security_group_id      = module.network.lb_security_group_id
  gateway_security_group_id = module.network.gateway_security_group_id
  image                     = local.image
  execution_role_arn        = module.iam.execution_role_arn
  task_role_arn             = module.iam.gateway_role_arn
  log_group                 = module.logs.gateway_log_group
  redis_tls_endpoint        = module.redis.tls_endpoint
  redis_token_parameter_arn = module.redis.auth_token_parameter_arn
  model_name                = var.model_name
  min_tasks                 = var.gateway_min_tasks
  max_tasks                 = var.gateway_max_tasks
  certificate_arn           = var.certificate_arn
  worker_backend            = var.worker_backend
  asg_name                  = module.workers_gpu.asg_name
  lambda_function_name      = local.lambda_function_name
  lambda_max_concurrency    = var.lambda_max_concurrency
  min_warm                  = var.min_warm
  max_workers               = var.worker_backend == "lambda" ? var.lambda_max_concurrency : var.gpu_max_instances
  worker_idle_timeout_s     = var.worker_idle_timeout_s
  worker_price_per_hour     = var.worker_backend == "lambda" ? local.lambda_worker_hour : local.gpu_worker_hour
}

module "api_gateway" {
  source      = "../modules/api_gateway"
  count       = var.api_gateway ? 1 : 0
  name        = var.name
  backend_url = module.gateway.url
}
