variable "name" {
  description = "Deployment name (part of the log group names)."
  type        = string
}

variable "lambda_function_name" {
  description = "Name of the Lambda worker function, or null when there is none."
  type        = string
  default     = null
}

variable "retention_days" {
  description = "Days CloudWatch keeps log events."
  type        = number
  default     = 14
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
