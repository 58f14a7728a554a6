variable "name" {
  description = "Prefix for every resource's name (32 characters at most: load balancer names)."
  type        = string
  validation {
    condition     = length(var.name) <= 32
    error_message = "name must be at most 32 characters (ALB and target group names)."
  }
}

variable "region" {
  description = "The region."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the load balancer."
  type        = list(string)
}

variable "private_subnet_ids" {
  description = "Subnets of the tasks."
  type        = list(string)
}

variable "lb_security_group_id" {
  description = "Security group of the load balancer."
  type        = string
}

variable "gateway_security_group_id" {
  description = "Security group of the tasks."
  type        = string
}

variable "image" {
  description = "The Synapse image (deploy/docker/Dockerfile) in ECR."
  type        = string
}

variable "execution_role_arn" {
  description = "ECS task execution role."
  type        = string
}

variable "task_role_arn" {
  description = "Role of the tasks (the pool manager calls Lambda and Auto Scaling with it)."
  type        = string
}

variable "log_group" {
  description = "CloudWatch log group."
  type        = string
}

variable "redis_tls_endpoint" {
  description = "Redis host:port, reached over TLS through stunnel."
  type        = string
}

variable "redis_token_parameter_arn" {
  description = "SSM parameter holding the Redis AUTH token."
  type        = string
}

variable "model_name" {
  description = "The model's name in requests and Redis keys."
  type        = string
}

variable "port" {
  description = "Port the gateway listens on."
  type        = number
  default     = 8080
}

variable "cpu" {
  description = "Fargate CPU units per gateway task (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate memory per gateway task, MiB."
  type        = number
  default     = 1024
}

variable "min_tasks" {
  description = "Gateway tasks at least (the front door does not scale to zero)."
  type        = number
  default     = 1
}

variable "max_tasks" {
  description = "Gateway tasks at most."
  type        = number
  default     = 4
}

variable "target_cpu_percent" {
  description = "Average CPU the gateway tasks are scaled to."
  type        = number
  default     = 60
}

variable "target_connections_per_task" {
  description = "Active connections per gateway task the service is scaled to."
  type        = number
  default     = 500
}

variable "max_queue" {
  description = "Queued jobs per model before the gateway answers 429."
  type        = number
  default     = 256
}

variable "idle_timeout_s" {
  description = "ALB idle timeout: a stream quiet for this long is cut."
  type        = number
  default     = 300
}

variable "deregistration_delay_s" {
  description = "How long a stopping gateway keeps its streams before the ALB drops them."
  type        = number
  default     = 120
}

variable "certificate_arn" {
  description = "ACM certificate for HTTPS on 443 (HTTP then redirects); null = HTTP only."
  type        = string
  default     = null
}

variable "worker_backend" {
  description = "Where the pool manager starts workers: asg (GPU instances) or lambda."
  type        = string
  default     = "asg"
  validation {
    condition     = contains(["asg", "lambda"], var.worker_backend)
    error_message = "worker_backend must be asg or lambda."
  }
}

variable "asg_name" {
  description = "The GPU workers' Auto Scaling group."
  type        = string
}

variable "lambda_function_name" {
  description = "The Lambda worker function, or null."
  type        = string
  default     = null
}

variable "lambda_max_concurrency" {
  description = "Lambda invocations at once at most (0 = no limit of ours)."
  type        = number
  default     = 0
}

variable "min_warm" {
  description = "Workers kept up at all times (0 = scale to zero)."
  type        = number
  default     = 0
}

variable "max_workers" {
  description = "Workers at most."
  type        = number
  default     = 2
}

variable "worker_idle_timeout_s" {
  description = "Workers exit after this long without work."
  type        = number
  default     = 300
}

variable "worker_max_seqs" {
  description = "Sequences one worker batches."
  type        = number
  default     = 16
}

variable "worker_price_per_hour" {
  description = "Dollars per worker-hour, for the pool's cost accounting."
  type        = number
  default     = 0
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
