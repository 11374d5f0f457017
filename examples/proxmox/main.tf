# A service on Proxmox VE: an unprivileged LXC container per service (nesting
# and keyctl on, for Docker), bootstrapped over SSH with the same script EC2
# user-data runs. The Proxmox API endpoint and token come from
# PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN (or the proxmox block below).
terraform {
  required_version = ">= 1.3"

  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}

provider "launch" {
  # control_url and token come from LAUNCH_ADDR and LAUNCH_TOKEN.
  proxmox {
    # endpoint  = "https://pve.example.com:8006" # or PROXMOX_VE_ENDPOINT
    # api_token = "root@pam!launch=…"             # or PROXMOX_VE_API_TOKEN
    insecure = false # true for a node with a self-signed certificate
  }
}

module "wiki" {
  source = "../../modules/launch-service"

  service_name = "wiki"
  target       = "proxmox"
  size         = "small"

  proxmox = {
    node     = "pve1"
    template = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"
    storage  = "local-lvm"
    bridge   = "vmbr0"
  }
}

output "agent_id" {
  value = module.wiki.agent_id
}

output "url" {
  description = "https://<fqdn> when the service is public, else null."
  value       = module.wiki.url
}
