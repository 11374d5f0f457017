variable "launch_control_url" {
  description = "Address of the Launch control plane, reachable from where terraform runs and from the new hosts, e.g. http://10.0.0.5:7400. Null: LAUNCH_ADDR."
  type        = string
  default     = null
}

variable "launch_token" {
  description = "Control-plane admin token (<data-dir>/admin.token). Null: LAUNCH_TOKEN, which is how CI passes it."
  type        = string
  default     = null
  sensitive   = true
}

variable "aws_region" {
  description = "AWS region for the hosts. Null: AWS_REGION."
  type        = string
  default     = null
}

variable "cloudflare_api_token" {
  description = "Cloudflare API token with Zone / DNS / Edit on the zone, for public services. Null: CLOUDFLARE_API_TOKEN."
  type        = string
  default     = null
  sensitive   = true
}

variable "cloudflare_zone_id" {
  description = "ID of the Cloudflare zone that holds cloudflare_domain. Null: CLOUDFLARE_ZONE_ID."
  type        = string
  default     = null
}

variable "cloudflare_domain" {
  description = "Domain public services get names under, e.g. example.com (librechat.example.com). Null: CLOUDFLARE_DOMAIN."
  type        = string
  default     = null
}

provider "launch" {
  control_url = var.launch_control_url
  token       = var.launch_token

  aws {
    region = var.aws_region
  }

  # Needed only by services with public = true.
  cloudflare {
    api_token = var.cloudflare_api_token
    zone_id   = var.cloudflare_zone_id
    domain    = var.cloudflare_domain
  }
}
