output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Subnets of the load balancer."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "Subnets of the gateway tasks, Redis and the workers."
  value       = aws_subnet.private[*].id
}

output "lb_security_group_id" {
  description = "Security group of the load balancer."
  value       = aws_security_group.lb.id
}

output "gateway_security_group_id" {
  description = "Security group of the gateway tasks."
  value       = aws_security_group.gateway.id
}

output "workers_security_group_id" {
  description = "Security group of the GPU instances and Lambda workers."
  value       = aws_security_group.workers.id
}

output "redis_security_group_id" {
  description = "Security group of Redis."
  value       = aws_security_group.redis.id
}

output "nat_gateways" {
  description = "NAT gateways created (each billed by the hour)."
  value       = length(aws_nat_gateway.this)
}
