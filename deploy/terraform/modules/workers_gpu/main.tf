# GPU workers: an EC2 Auto Scaling group of GPU instances, minimum 0, from a launch template
# whose user data fetches the model from S3 and starts `synapse worker` (in the Synapse image).
# The group never scales by itself: the pool manager raises its desired capacity (asg backend)
# and protects busy instances from scale-in; each instance leaves the group when its worker has
# been idle for idle_timeout_s. Instances run in private subnets with no inbound access.

terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.100.0, < 6.0.0"
    }
  }
}

# The Deep Learning Base AMI (NVIDIA driver, Docker, AWS CLI) unless an AMI is given.
data "aws_ssm_parameter" "dlami" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
}

locals {
  ami_id = var.ami_id == null ? data.aws_ssm_parameter.dlami[0].insecure_value : var.ami_id
}

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  vpc_security_group_ids = [var.security_group_id]
  update_default_version = true
  iam_instance_profile {
    name = var.instance_profile_name
  }
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 2          # reachable from the container
  }
  block_device_mappings {
    device_name = "/dev/sda1"
    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }
  dynamic "instance_market_options" {
    for_each = var.spot ? [1] : []
    content {
      market_type = "spot"
    }
  }
  user_data = base64encode(templatefile("${path.module}/user_data.sh.tpl", {
    region                = var.region
    image                 = var.image
    model_bucket          = var.model_bucket
    model_key             = var.model_key
    model_name            = var.model_name
    redis_tls_endpoint    = var.redis_tls_endpoint
    redis_token_parameter = var.redis_token_parameter_name
    log_group             = var.log_group
    idle_timeout          = var.idle_timeout_s
    max_seqs              = var.max_seqs
  }))
  tag_specifications {
    resource_type = "instance"
    tags          = merge(var.tags, { Name = "${var.name}-gpu-worker" })
  }
  tags = var.tags
}

resource "aws_autoscaling_group" "this" {
  name                      = var.name
  min_size                  = 0
  max_size                  = var.max_size
  desired_capacity          = 0
  vpc_zone_identifier       = var.subnet_ids
  health_check_type         = "EC2"
  health_check_grace_period = 300
  # the pool manager owns the desired capacity; instances protect themselves while busy
  protect_from_scale_in = false
  launch_template {
    id      = aws_launch_template.this.id
    version = "$Latest"
  }
  enabled_metrics = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupPendingInstances"]
  # AZ rebalancing would terminate instances behind the pool's back
  suspended_processes = ["AZRebalance"]
  dynamic "tag" {
    for_each = merge(var.tags, { Name = "${var.name}-gpu-worker" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
  lifecycle {
    ignore_changes = [desired_capacity]
  }
}
