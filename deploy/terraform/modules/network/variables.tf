variable "name" {
  description = "Prefix for every resource's name."
  type        = string
}

variable "region" {
  description = "The region (for the S3 endpoint's service name)."
  type        = string
}

variable "cidr" {
  description = "The VPC's address range."
  type        = string
  default     = "10.42.0.0/16"
}

variable "az_count" {
  description = "Availability zones to spread subnets over (the load balancer needs two)."
  type        = number
  default     = 2
  validation {
    condition     = var.az_count >= 2 && var.az_count <= 4
    error_message = "az_count must be 2 to 4."
  }
}

variable "nat_gateway" {
  description = "Create a NAT gateway for the private subnets (needed unless VPC endpoints for ECR, logs, SSM and the AWS APIs are added)."
  type        = bool
  default     = true
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the load balancer."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "gateway_port" {
  description = "The port the gateway listens on."
  type        = number
  default     = 8080
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
