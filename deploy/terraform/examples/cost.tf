# The cost model behind the estimated_cost_per_hour outputs: on-demand list prices (us-east-1 by
# default; override var.prices for another region), per hour, for what this deployment keeps
# running. Not included: data transfer, NAT data processing, CloudWatch ingestion, Container
# Insights metrics, API Gateway requests ($ per million, not per hour), ECR storage.
#
#   idle        gateway_min_tasks gateway tasks + the pool task + ALB + NAT + Redis nodes
#               + min_warm workers
#   full scale  gateway_max_tasks gateway tasks + the pool task + ALB (with LCUs) + NAT + Redis
#               + every worker the backend may start (GPU instances with their volumes, or
#               Lambda invocations at their memory size)

locals {
  task_hour          = module.gateway.task_vcpu * var.prices.fargate_vcpu_hour + module.gateway.task_memory_gb * var.prices.fargate_gb_hour
  pool_task_hour     = 0.25 * var.prices.fargate_vcpu_hour + 0.5 * var.prices.fargate_gb_hour
  gpu_worker_hour    = lookup(var.prices.ec2_hour, var.gpu_instance_type, 0) * (var.gpu_spot ? var.prices.spot_discount : 1) + 100 * var.prices.ebs_gb_month / 730
  lambda_worker_hour = (var.lambda_memory_mb / 1024) * var.prices.lambda_gb_second * 3600
  worker_hour        = var.worker_backend == "lambda" ? local.lambda_worker_hour : local.gpu_worker_hour
  fixed_hour = (local.pool_task_hour + var.prices.alb_hour + module.network.nat_gateways * var.prices.nat_hour
  + module.redis.nodes * lookup(var.prices.elasticache_hour, var.redis_node_type, 0))
  idle_hour = local.fixed_hour + var.gateway_min_tasks * local.task_hour + var.min_warm * local.worker_hour
  full_workers_hour = (var.worker_backend == "lambda" ? var.lambda_max_concurrency * local.lambda_worker_hour
  : var.gpu_max_instances * local.gpu_worker_hour)
  full_hour = (local.fixed_hour + var.gateway_max_tasks * local.task_hour
  + var.prices.alb_lcu_hour * var.gateway_max_tasks + local.full_workers_hour)
}
