output "primary_endpoint" {
  description = "Host name of the primary (TLS on port 6379)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = aws_elasticache_replication_group.this.port
}

output "tls_endpoint" {
  description = "host:port for stunnel (SYNAPSE_REDIS_TLS_ENDPOINT)."
  value       = "${aws_elasticache_replication_group.this.primary_endpoint_address}:${aws_elasticache_replication_group.this.port}"
}

output "auth_token_parameter_arn" {
  description = "SSM parameter holding the AUTH token."
  value       = aws_ssm_parameter.auth_token.arn
}

output "auth_token_parameter_name" {
  description = "Name of the SSM parameter holding the AUTH token."
  value       = aws_ssm_parameter.auth_token.name
}

output "nodes" {
  description = "Cache nodes billed."
  value       = 1 + var.replicas
}
