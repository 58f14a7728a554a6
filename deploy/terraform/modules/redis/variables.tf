variable "name" {
  description = "Replication group id and name prefix."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the nodes."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group that admits the gateway and the workers."
  type        = string
}

variable "node_type" {
  description = "Cache node type. The queue holds jobs and token events, not models: small nodes do."
  type        = string
  default     = "cache.t4g.small"
}

variable "engine_version" {
  description = "Redis engine version (7.x: XINFO GROUPS lag is used for autoscaling)."
  type        = string
  default     = "7.1"
}

variable "replicas" {
  description = "Read replicas; 1 or more turns on automatic failover and Multi-AZ."
  type        = number
  default     = 0
}

variable "auth_token" {
  description = "Redis AUTH token: 16-128 characters of [A-Za-z0-9-] (it goes into redis:// URLs)."
  type        = string
  sensitive   = true
  validation {
    condition     = can(regex("^[A-Za-z0-9-]{16,128}$", var.auth_token))
    error_message = "auth_token must be 16 to 128 characters of A-Z, a-z, 0-9 and '-'."
  }
}

variable "kms_key_arn" {
  description = "KMS key for encryption at rest; null = the AWS managed key."
  type        = string
  default     = null
}

variable "snapshot_retention_days" {
  description = "Daily snapshots kept (0 = none)."
  type        = number
  default     = 1
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
