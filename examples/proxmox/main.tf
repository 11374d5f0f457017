# A service on Proxmox VE (an LXC container per service), as the design has
# it. The provider does not implement target = "proxmox" yet: this example
# documents the interface, and `terraform plan` stops with the provider's
# message ("\"proxmox\" is not available in this provider version yet") before
# anything is created.
terraform {
  required_version = ">= 1.3"

  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}

provider "launch" {
  # control_url and token come from LAUNCH_ADDR and LAUNCH_TOKEN. The Proxmox
  # API endpoint and credentials will go in a provider proxmox {} block once
  # the provider has one.
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
