variable "name" {
  description = "Prefix for role names."
  type        = string
}

variable "region" {
  description = "The region (for ARNs)."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ECR repository of the Synapse image."
  type        = string
}

variable "gateway_log_group_arn" {
  description = "Log group of the gateway tasks."
  type        = string
}

variable "workers_gpu_log_group_arn" {
  description = "Log group of the GPU workers."
  type        = string
}

variable "workers_lambda_log_group_arn" {
  description = "Log group of the Lambda workers (null without them)."
  type        = string
  default     = null
}

variable "redis_token_parameter_arn" {
  description = "SSM parameter with the Redis AUTH token."
  type        = string
}

variable "model_bucket" {
  description = "S3 bucket holding the model file."
  type        = string
}

variable "model_key" {
  description = "S3 key of the model file (GGUF)."
  type        = string
}

variable "asg_name" {
  description = "Name of the GPU workers' Auto Scaling group."
  type        = string
}

variable "lambda_function_name" {
  description = "Name of the Lambda worker function, or null when there is none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
