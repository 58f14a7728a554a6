# Optional: an API Gateway REST API in front of the load balancer, for what API Gateway adds
# (usage plans, WAF, custom domains, request logging), with payload response streaming so that
# tokens reach the client as they are generated (STREAM response transfer mode, integration
# timeout up to 15 minutes).
#
# Why a REST API and not an HTTP API: HTTP APIs (API Gateway v2) buffer the whole integration
# response and end every request at 30 seconds, so a chat completion would arrive all at once, or
# be cut off when it takes longer. REST APIs can stream (STREAM mode, HTTP_PROXY integrations).
#
# The integration's STREAM mode is set through the OpenAPI definition
# (x-amazon-apigateway-integration.responseTransferMode): the aws provider 5.x resource for
# integrations has no argument for it.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

locals {
  openapi = {
    openapi = "3.0.1"
    info    = { title = var.name, version = "1" }
    paths = {
      "/{proxy+}" = {
        x-amazon-apigateway-any-method = {
          parameters = [{ name = "proxy", in = "path", required = true, schema = { type = "string" } }]
          x-amazon-apigateway-integration = {
            type                 = "http_proxy"
            httpMethod           = "ANY"
            uri                  = "${var.backend_url}/{proxy}"
            requestParameters    = { "integration.request.path.proxy" = "method.request.path.proxy" }
            passthroughBehavior  = "when_no_match"
            timeoutInMillis      = var.timeout_ms
            responseTransferMode = "STREAM"
          }
        }
      }
    }
  }
}

resource "aws_api_gateway_rest_api" "this" {
  name = var.name
  body = jsonencode(local.openapi)
  endpoint_configuration {
    types = ["REGIONAL"]
  }
  tags = var.tags
}

resource "aws_api_gateway_deployment" "this" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  triggers = {
    redeployment = sha1(jsonencode(local.openapi))
  }
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_stage" "this" {
  rest_api_id   = aws_api_gateway_rest_api.this.id
  deployment_id = aws_api_gateway_deployment.this.id
  stage_name    = var.stage_name
  tags          = var.tags
}

resource "aws_api_gateway_method_settings" "all" {
  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.this.stage_name
  method_path = "*/*"
  settings {
    throttling_rate_limit  = var.rate_limit
    throttling_burst_limit = var.burst_limit
    metrics_enabled        = true
  }
}
