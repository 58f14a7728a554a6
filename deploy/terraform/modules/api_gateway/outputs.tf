output "url" {
  description = "The API's base URL (append /v1/chat/completions)."
  value       = aws_api_gateway_stage.this.invoke_url
}
