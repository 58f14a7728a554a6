# The front door: the OpenAI-compatible gateway on ECS Fargate behind an Application Load
# Balancer, and the pool manager that scales the workers.
#
#   gateway service  `synapse gateway`, stateless, 1..max tasks behind the ALB (health check
#                    /readyz), scaled on CPU and on active connections per task (streams are
#                    long-lived connections, which request counts undercount).
#   pool service     `synapse up` with the cloud pool backend (SYNAPSE_BACKEND = asg or lambda):
#                    the one pool manager, which must not run twice (two would both answer the same
#                    backlog), so it is its own service of exactly one task, outside the ALB.
#
# Both reach Redis through stunnel in the container (see the redis module) and log to
# CloudWatch.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

locals {
  redis_env = [
    { name = "SYNAPSE_REDIS_TLS_ENDPOINT", value = var.redis_tls_endpoint },
    { name = "AWS_REGION", value = var.region },
  ]
  redis_secret = [
    { name = "SYNAPSE_REDIS_AUTH_TOKEN", valueFrom = var.redis_token_parameter_arn },
  ]
  log = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = var.log_group
      awslogs-region        = var.region
      awslogs-stream-prefix = "synapse"
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled" # RunningTaskCount, for connections per task
  }
  tags = var.tags
}

# ---- the load balancer ----

resource "aws_lb" "this" {
  name               = var.name
  load_balancer_type = "application"
  internal           = false
  subnets            = var.public_subnet_ids
  security_groups    = [var.lb_security_group_id]
  idle_timeout       = var.idle_timeout_s
  tags               = var.tags
}

resource "aws_lb_target_group" "gateway" {
  name                 = var.name
  port                 = var.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay_s
  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  tags = var.tags
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type             = var.certificate_arn == null ? "forward" : "redirect"
    target_group_arn = var.certificate_arn == null ? aws_lb_target_group.gateway.arn : null
    dynamic "redirect" {
      for_each = var.certificate_arn == null ? [] : [1]
      content {
        port        = "443"
        protocol    = "HTTPS"
        status_code = "HTTP_301"
      }
    }
  }
}

resource "aws_lb_listener" "https" {
  count             = var.certificate_arn == null ? 0 : 1
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

# ---- tasks ----

resource "aws_ecs_task_definition" "gateway" {
  family                   = "${var.name}-gateway"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([{
    name         = "gateway"
    image        = var.image
    essential    = true
    command      = ["gateway"]
    portMappings = [{ containerPort = var.port, protocol = "tcp" }]
    environment = concat(local.redis_env, [
      { name = "SYNAPSE_HOST", value = "0.0.0.0" },
      { name = "SYNAPSE_PORT", value = tostring(var.port) },
      { name = "SYNAPSE_MODELS", value = var.model_name },
      { name = "SYNAPSE_MAX_QUEUE", value = tostring(var.max_queue) },
    ])
    secrets          = local.redis_secret
    logConfiguration = local.log
    stopTimeout      = 120
  }])
  tags = var.tags
}

resource "aws_ecs_task_definition" "pool" {
  family                   = "${var.name}-pool"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  container_definitions = jsonencode([{
    name      = "pool"
    image     = var.image
    essential = true
    command   = ["up"]
    environment = concat(local.redis_env, [
      { name = "SYNAPSE_NAME", value = var.model_name },
      { name = "SYNAPSE_HOST", value = "127.0.0.1" },
      { name = "SYNAPSE_PORT", value = "8081" },
      { name = "SYNAPSE_BACKEND", value = var.worker_backend },
      { name = "SYNAPSE_MIN_WARM", value = tostring(var.min_warm) },
      { name = "SYNAPSE_MAX_WORKERS", value = tostring(var.max_workers) },
      { name = "SYNAPSE_IDLE_TIMEOUT", value = tostring(var.worker_idle_timeout_s) },
      { name = "SYNAPSE_MAX_SEQS", value = tostring(var.worker_max_seqs) },
      { name = "SYNAPSE_PRICE_PER_HOUR", value = tostring(var.worker_price_per_hour) },
      { name = "SYNAPSE_ASG_NAME", value = var.asg_name },
      { name = "SYNAPSE_LAMBDA_FUNCTION", value = coalesce(var.lambda_function_name, "") },
      { name = "SYNAPSE_LAMBDA_MAX_CONCURRENCY", value = tostring(var.lambda_max_concurrency) },
    ])
    secrets          = local.redis_secret
    logConfiguration = local.log
    stopTimeout      = 30
  }])
  tags = var.tags
}

resource "aws_ecs_service" "gateway" {
  name                              = "${var.name}-gateway"
  cluster                           = aws_ecs_cluster.this.id
  task_definition                   = aws_ecs_task_definition.gateway.arn
  launch_type                       = "FARGATE"
  desired_count                     = var.min_tasks
  health_check_grace_period_seconds = 30
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.gateway_security_group_id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.gateway.arn
    container_name   = "gateway"
    container_port   = var.port
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    ignore_changes = [desired_count] # owned by the autoscaling policies below
  }
  depends_on = [aws_lb_listener.http]
  tags       = var.tags
}

resource "aws_ecs_service" "pool" {
  name            = "${var.name}-pool"
  cluster         = aws_ecs_cluster.this.id
  task_definition = aws_ecs_task_definition.pool.arn
  launch_type     = "FARGATE"
  desired_count   = 1
  # never two pool managers at once, even during a deployment
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [var.gateway_security_group_id]
    assign_public_ip = false
  }
  tags = var.tags
}

# ---- scaling the gateway: CPU and connections ----

resource "aws_appautoscaling_target" "gateway" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.gateway.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.min_tasks
  max_capacity       = var.max_tasks
}

resource "aws_appautoscaling_policy" "cpu" {
  name               = "${var.name}-gateway-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  resource_id        = aws_appautoscaling_target.gateway.resource_id
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.target_cpu_percent
    scale_in_cooldown  = 120
    scale_out_cooldown = 30
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

resource "aws_appautoscaling_policy" "connections" {
  name               = "${var.name}-gateway-connections"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.gateway.service_namespace
  resource_id        = aws_appautoscaling_target.gateway.resource_id
  scalable_dimension = aws_appautoscaling_target.gateway.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.target_connections_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 30
    customized_metric_specification {
      metrics {
        id          = "connections"
        return_data = false
        metric_stat {
          stat = "Sum"
          metric {
            namespace   = "AWS/ApplicationELB"
            metric_name = "ActiveConnectionCount"
            dimensions {
              name  = "LoadBalancer"
              value = aws_lb.this.arn_suffix
            }
          }
        }
      }
      metrics {
        id          = "tasks"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.this.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.gateway.name
            }
          }
        }
      }
      metrics {
        id          = "per_task"
        label       = "active connections per gateway task"
        expression  = "connections / IF(tasks > 0, tasks, 1)"
        return_data = true
      }
    }
  }
}
