output "url" {
  description = "The OpenAI-compatible endpoint through the load balancer."
  value       = "${var.certificate_arn == null ? "http" : "https"}://${aws_lb.this.dns_name}"
}

output "lb_dns_name" {
  description = "The load balancer's DNS name."
  value       = aws_lb.this.dns_name
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "gateway_service_name" {
  description = "The gateway service."
  value       = aws_ecs_service.gateway.name
}

output "task_vcpu" {
  description = "vCPUs of one gateway task (for the cost estimate)."
  value       = var.cpu / 1024
}

output "task_memory_gb" {
  description = "Memory of one gateway task in GB (for the cost estimate)."
  value       = var.memory / 1024
}
