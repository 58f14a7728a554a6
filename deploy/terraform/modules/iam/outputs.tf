output "execution_role_arn" {
  description = "ECS task execution role."
  value       = aws_iam_role.execution.arn
}

output "gateway_role_arn" {
  description = "Role of the gateway / pool manager tasks."
  value       = aws_iam_role.gateway.arn
}

output "gpu_instance_profile_name" {
  description = "Instance profile of the GPU workers."
  value       = aws_iam_instance_profile.gpu.name
}

output "lambda_role_arn" {
  description = "Role of the Lambda workers, or null."
  value       = one(aws_iam_role.lambda[*].arn)
}
