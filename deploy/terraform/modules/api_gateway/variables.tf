variable "name" {
  description = "API name."
  type        = string
}

variable "backend_url" {
  description = "Where requests go: the load balancer's URL (http://... or https://...)."
  type        = string
}

variable "stage_name" {
  description = "Stage name (the first path segment of the endpoint)."
  type        = string
  default     = "api"
}

variable "timeout_ms" {
  description = "Integration timeout; with STREAM mode up to 900000 (15 minutes)."
  type        = number
  default     = 900000
  validation {
    condition     = var.timeout_ms >= 50 && var.timeout_ms <= 900000
    error_message = "timeout_ms must be 50 to 900000."
  }
}

variable "rate_limit" {
  description = "Steady requests per second across the stage."
  type        = number
  default     = 50
}

variable "burst_limit" {
  description = "Burst of requests across the stage."
  type        = number
  default     = 100
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
