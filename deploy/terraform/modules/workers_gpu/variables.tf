variable "name" {
  description = "Auto Scaling group name and prefix."
  type        = string
}

variable "region" {
  description = "The region."
  type        = string
}

variable "instance_type" {
  description = "GPU instance type (g6.xlarge: one NVIDIA L4, 24 GB; 4 vCPUs, 16 GiB)."
  type        = string
  default     = "g6.xlarge"
}

variable "ami_id" {
  description = "AMI with the NVIDIA driver, Docker and the AWS CLI; null = the latest Deep Learning Base AMI (Ubuntu 22.04)."
  type        = string
  default     = null
}

variable "spot" {
  description = "Run the workers on Spot capacity (their jobs are reclaimed by others if one is taken away)."
  type        = bool
  default     = false
}

variable "max_size" {
  description = "GPU instances at most."
  type        = number
  default     = 2
}

variable "subnet_ids" {
  description = "Private subnets."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the workers."
  type        = string
}

variable "instance_profile_name" {
  description = "Instance profile (iam module)."
  type        = string
}

variable "image" {
  description = "The Synapse image in ECR."
  type        = string
}

variable "model_bucket" {
  description = "S3 bucket of the model."
  type        = string
}

variable "model_key" {
  description = "S3 key of the model (a GGUF file)."
  type        = string
}

variable "model_name" {
  description = "The model's name in requests and Redis keys."
  type        = string
}

variable "redis_tls_endpoint" {
  description = "Redis host:port (TLS, through stunnel)."
  type        = string
}

variable "redis_token_parameter_name" {
  description = "SSM parameter holding the Redis AUTH token."
  type        = string
}

variable "log_group" {
  description = "CloudWatch log group for the workers."
  type        = string
}

variable "idle_timeout_s" {
  description = "A worker idle this long exits and its instance leaves the group."
  type        = number
  default     = 300
}

variable "max_seqs" {
  description = "Sequences one worker batches."
  type        = number
  default     = 16
}

variable "root_volume_gb" {
  description = "Root volume size (the AMI, the image and the model)."
  type        = number
  default     = 100
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
