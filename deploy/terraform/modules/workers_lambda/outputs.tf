output "function_name" {
  description = "The function (SYNAPSE_LAMBDA_FUNCTION for the pool manager)."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "The function's ARN."
  value       = aws_lambda_function.this.arn
}

output "memory_gb" {
  description = "Memory per invocation in GB (for the cost estimate)."
  value       = var.memory_mb / 1024
}
