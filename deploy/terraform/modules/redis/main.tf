# The job queue: ElastiCache for Redis 7 (Redis Streams with consumer groups, XINFO lag), one
# primary with optional replicas, in the private subnets.
#
# Security: an AUTH token, encryption at rest, and encryption in transit. ElastiCache accepts an
# AUTH token only together with in-transit encryption (TLS), and the hiredis 0.14 that Synapse
# links has no TLS. The remedy chosen: every client runs stunnel next to synapse (the container
# entry point, deploy/docker/entrypoint.sh, starts it when SYNAPSE_REDIS_TLS_ENDPOINT is set), so
# synapse talks plain RESP to 127.0.0.1 and stunnel carries it over TLS to ElastiCache. Turning
# transit encryption off instead would also turn the AUTH token off (ElastiCache refuses the
# combination) and leave only security groups between the queue and anything in the VPC.
#
# The queue must never lose a job to eviction: maxmemory-policy is noeviction (a full Redis
# refuses new jobs, which the gateway turns into 503s, instead of silently dropping old ones).

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-redis7"
  family      = "redis7"
  description = "Synapse job queue: never evict"
  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
  tags = var.tags
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id       = var.name
  description                = "Synapse job queue (Redis Streams)"
  engine                     = "redis"
  engine_version             = var.engine_version
  node_type                  = var.node_type
  port                       = 6379
  num_cache_clusters         = 1 + var.replicas
  automatic_failover_enabled = var.replicas > 0
  multi_az_enabled           = var.replicas > 0
  parameter_group_name       = aws_elasticache_parameter_group.this.name
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [var.security_group_id]
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = var.auth_token
  snapshot_retention_limit   = var.snapshot_retention_days
  apply_immediately          = true
  tags                       = var.tags
}

# The token for the clients: ECS injects it as a secret, the GPU instances read it at boot, the
# Lambda function reads it from its environment (encrypted at rest by Lambda).
resource "aws_ssm_parameter" "auth_token" {
  name        = "/${var.name}/redis/auth-token"
  description = "AUTH token of the Synapse Redis"
  type        = "SecureString"
  value       = var.auth_token
  tags        = var.tags
}
