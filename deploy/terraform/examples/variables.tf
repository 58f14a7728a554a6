variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Deployment name: the prefix of every resource (lower case, 20 characters at most)."
  type        = string
  default     = "synapse"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "model_name" {
  description = "The model's name in requests (\"model\": ...) and Redis keys."
  type        = string
  default     = "stories"
}

variable "model_bucket" {
  description = "S3 bucket holding the model file."
  type        = string
}

variable "model_key" {
  description = "S3 key of the model file (a GGUF file)."
  type        = string
}

variable "image_tag" {
  description = "Tag of the images pushed to the two ECR repositories."
  type        = string
  default     = "latest"
}

variable "redis_auth_token" {
  description = "Redis AUTH token, 16-128 characters of [A-Za-z0-9-] (e.g. TF_VAR_redis_auth_token=$(openssl rand -hex 32))."
  type        = string
  sensitive   = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.small"
}

variable "redis_replicas" {
  description = "Redis replicas (1+ for automatic failover)."
  type        = number
  default     = 0
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on the load balancer; null = HTTP only."
  type        = string
  default     = null
}

variable "gateway_min_tasks" {
  description = "Gateway tasks at least."
  type        = number
  default     = 1
}

variable "gateway_max_tasks" {
  description = "Gateway tasks at most."
  type        = number
  default     = 4
}

variable "worker_backend" {
  description = "Where the pool manager starts workers: asg (GPU instances) or lambda (needs lambda_workers)."
  type        = string
  default     = "asg"
  validation {
    condition     = var.worker_backend == "asg" || (var.worker_backend == "lambda" && var.lambda_workers)
    error_message = "worker_backend must be asg, or lambda with lambda_workers = true."
  }
}

variable "min_warm" {
  description = "Workers kept up at all times (0 = scale to zero)."
  type        = number
  default     = 0
}

variable "worker_idle_timeout_s" {
  description = "A worker idle this long exits (GPU instances then leave their group)."
  type        = number
  default     = 300
}

variable "gpu_instance_type" {
  description = "GPU instance type for workers."
  type        = string
  default     = "g6.xlarge"
}

variable "gpu_max_instances" {
  description = "GPU instances at most."
  type        = number
  default     = 2
}

variable "gpu_spot" {
  description = "Run GPU workers on Spot capacity."
  type        = bool
  default     = false
}

variable "lambda_workers" {
  description = "Create the Lambda worker function (push the Lambda image first)."
  type        = bool
  default     = false
}

variable "lambda_memory_mb" {
  description = "Memory of the Lambda workers."
  type        = number
  default     = 4096
}

variable "lambda_max_concurrency" {
  description = "Lambda workers at once at most (the function's reserved concurrency)."
  type        = number
  default     = 4
}

variable "api_gateway" {
  description = "Put an API Gateway REST API (response streaming) in front of the load balancer."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps logs."
  type        = number
  default     = 14
}

variable "force_delete_images" {
  description = "Let terraform destroy delete ECR repositories that still hold images."
  type        = bool
  default     = false
}

variable "prices" {
  description = "On-demand prices for the cost estimate (us-east-1 list prices; set your region's)."
  type = object({
    fargate_vcpu_hour = number
    fargate_gb_hour   = number
    alb_hour          = number
    alb_lcu_hour      = number
    nat_hour          = number
    elasticache_hour  = map(number)
    ec2_hour          = map(number)
    spot_discount     = number
    ebs_gb_month      = number
    lambda_gb_second  = number
  })
  default = {
    fargate_vcpu_hour = 0.04048
    fargate_gb_hour   = 0.004445
    alb_hour          = 0.0225
    alb_lcu_hour      = 0.008
    nat_hour          = 0.045
    elasticache_hour = {
      "cache.t4g.micro"  = 0.016
      "cache.t4g.small"  = 0.032
      "cache.t4g.medium" = 0.065
      "cache.r7g.large"  = 0.219
    }
    ec2_hour = {
      "g6.xlarge"   = 0.8048
      "g6.2xlarge"  = 0.9776
      "g6.12xlarge" = 4.6016
      "g5.xlarge"   = 1.006
      "g4dn.xlarge" = 0.526
    }
    spot_discount    = 0.4
    ebs_gb_month     = 0.08
    lambda_gb_second = 0.0000166667
  }
}
