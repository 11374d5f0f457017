# A service on AWS with every setting the module takes for EC2. Run from this
# directory with LAUNCH_ADDR, LAUNCH_TOKEN and AWS credentials in the
# environment (see docs/from-zero-to-live-url.md).
terraform {
  required_version = ">= 1.3"

  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}

variable "region" {
  description = "AWS region for the host."
  type        = string
  default     = "eu-west-1"
}

variable "subnet_id" {
  description = "Subnet for the host; null: the default VPC's default subnet."
  type        = string
  default     = null
}

variable "security_group_ids" {
  description = "Existing security groups for the host (e.g. one allowing 80/443 in and SSH from your network); null: the VPC's default group."
  type        = list(string)
  default     = null
}

variable "database_url" {
  description = "An example secret, passed to the service's containers as DATABASE_URL."
  type        = string
  sensitive   = true
  default     = "postgres://app@db.internal/app"
}

provider "launch" {
  # control_url and token come from LAUNCH_ADDR and LAUNCH_TOKEN.
  aws {
    region = var.region
  }
}

module "api" {
  source = "../../modules/launch-service"

  service_name = "api"
  environment  = "staging"
  target       = "aws"
  size         = "medium"

  secrets = {
    DATABASE_URL = var.database_url
    LOG_LEVEL    = "info"
  }

  tags = {
    team = "platform"
  }

  aws = {
    subnet_id          = var.subnet_id
    security_group_ids = var.security_group_ids
    key_name           = null
  }
}

output "instance_id" {
  value = module.api.instance_id
}

output "agent_id" {
  value = module.api.agent_id
}

output "url" {
  description = "https://<fqdn> when the service is public; null here (public = false)."
  value       = module.api.url
}
