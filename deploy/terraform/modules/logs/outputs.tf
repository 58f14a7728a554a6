output "gateway_log_group" {
  description = "Log group of the gateway and pool manager tasks."
  value       = aws_cloudwatch_log_group.gateway.name
}

output "gateway_log_group_arn" {
  description = "ARN of the gateway log group."
  value       = aws_cloudwatch_log_group.gateway.arn
}

output "workers_gpu_log_group" {
  description = "Log group of the GPU workers."
  value       = aws_cloudwatch_log_group.workers_gpu.name
}

output "workers_gpu_log_group_arn" {
  description = "ARN of the GPU workers' log group."
  value       = aws_cloudwatch_log_group.workers_gpu.arn
}

output "workers_lambda_log_group_arn" {
  description = "ARN of the Lambda workers' log group, or null."
  value       = one(aws_cloudwatch_log_group.workers_lambda[*].arn)
}
