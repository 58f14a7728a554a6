output "asg_name" {
  description = "The Auto Scaling group (SYNAPSE_ASG_NAME for the pool manager)."
  value       = aws_autoscaling_group.this.name
}

output "asg_arn" {
  description = "The Auto Scaling group's ARN."
  value       = aws_autoscaling_group.this.arn
}

output "max_size" {
  description = "GPU instances at most."
  value       = var.max_size
}
