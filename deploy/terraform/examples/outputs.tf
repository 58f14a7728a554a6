output "endpoint" {
  description = "The OpenAI-compatible endpoint (API Gateway when enabled, else the load balancer)."
  value       = var.api_gateway ? module.api_gateway[0].url : module.gateway.url
}

output "load_balancer_url" {
  description = "The load balancer's URL."
  value       = module.gateway.url
}

output "redis_address" {
  description = "Redis primary endpoint, host:port (TLS and AUTH; clients go through stunnel)."
  value       = module.redis.tls_endpoint
}

output "ecr_repository_url" {
  description = "Push the gateway/worker image (deploy/docker/Dockerfile) here."
  value       = aws_ecr_repository.synapse.repository_url
}

output "ecr_lambda_repository_url" {
  description = "Push the Lambda image (deploy/docker/Dockerfile.lambda) here."
  value       = aws_ecr_repository.lambda.repository_url
}

output "gpu_autoscaling_group" {
  description = "The GPU workers' Auto Scaling group."
  value       = module.workers_gpu.asg_name
}

output "lambda_function" {
  description = "The Lambda worker function, or null."
  value       = var.lambda_workers ? module.workers_lambda[0].function_name : null
}

output "estimated_cost_per_hour_idle" {
  description = "USD per hour with no traffic (see cost.tf for what is and is not counted)."
  value       = format("%.3f", local.idle_hour)
}

output "estimated_cost_per_hour_full_scale" {
  description = "USD per hour with every gateway task and worker running."
  value       = format("%.3f", local.full_hour)
}
