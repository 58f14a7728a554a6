variable "function_name" {
  description = "Lambda function name."
  type        = string
}

variable "role_arn" {
  description = "Execution role (iam module)."
  type        = string
}

variable "image_uri" {
  description = "ECR image built from deploy/docker/Dockerfile.lambda."
  type        = string
}

variable "model_path" {
  description = "Path of the model inside the image."
  type        = string
  default     = "/opt/synapse/model.gguf"
}

variable "model_name" {
  description = "The model's name in requests and Redis keys."
  type        = string
}

variable "memory_mb" {
  description = "Function memory (vCPUs grow with it: 1769 MB is one vCPU, 10240 MB six)."
  type        = number
  default     = 4096
}

variable "timeout_s" {
  description = "Function timeout, seconds (900 at most); the worker stops before it."
  type        = number
  default     = 900
}

variable "max_concurrency" {
  description = "Reserved concurrency: invocations at once at most."
  type        = number
  default     = 4
}

variable "max_seqs" {
  description = "Sequences one invocation batches."
  type        = number
  default     = 8
}

variable "idle_timeout_s" {
  description = "An invocation's worker exits after this long without work."
  type        = number
  default     = 30
}

variable "subnet_ids" {
  description = "Private subnets."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the workers."
  type        = string
}

variable "redis_tls_endpoint" {
  description = "Redis host:port (TLS, through stunnel in the image)."
  type        = string
}

variable "redis_auth_token" {
  description = "Redis AUTH token (kept in the function's encrypted environment)."
  type        = string
  sensitive   = true
}

variable "log_group" {
  description = "CloudWatch log group (/aws/lambda/<function>)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
