# One host for one service in one environment. The provider registers the
# service with the control plane, mints a single-use join token, stores the
# secrets and boots the host, whose agent registers with the labels
# service-name = var.service_name and environment = var.environment.
#
# On AWS the host gets its own security group: 80 and 443 open when public,
# plus var.ingress_ports, nothing else inbound. Groups in
# aws.security_group_ids are attached as well. On Proxmox the container's
# own PVE firewall gets the same rule (the bootstrap's SSH comes first).
resource "launch_service" "this" {
  name           = var.service_name
  environment    = var.environment
  target         = var.target
  size           = var.size
  public         = var.public
  previews       = var.previews
  secrets        = var.secrets
  tags           = var.tags
  wait_for_agent = var.wait_for_agent

  dynamic "dns" {
    # The record exists only for a public service; the block alone would
    # only draw the provider's "no effect" warning.
    for_each = var.public && var.dns != null ? [var.dns] : []
    content {
      proxied         = dns.value.proxied
      allow_overwrite = dns.value.allow_overwrite
      ttl             = dns.value.ttl
    }
  }

  dynamic "aws" {
    # Only an aws target takes aws settings; null means the provider's defaults.
    for_each = var.target == "aws" ? [var.aws == null ? local.aws_defaults : var.aws] : []
    content {
      ami                = aws.value.ami
      subnet_id          = aws.value.subnet_id
      security_group_ids = concat(launch_aws_security_group.this[*].id, coalesce(aws.value.security_group_ids, []))
      key_name           = aws.value.key_name
      instance_type      = aws.value.instance_type
      spot               = aws.value.spot
      max_price          = aws.value.max_price
    }
  }

  dynamic "proxmox" {
    for_each = var.target == "proxmox" ? [var.proxmox == null ? local.proxmox_defaults : var.proxmox] : []
    content {
      node     = proxmox.value.node
      template = proxmox.value.template
      storage  = proxmox.value.storage
      bridge   = proxmox.value.bridge
      vmid     = proxmox.value.vmid
      ip       = proxmox.value.ip
      gateway  = proxmox.value.gateway
      # The same inbound rule as the AWS security group below.
      firewall          = true
      ingress_tcp_ports = distinct(concat(var.public ? [80, 443] : [], var.ingress_ports))
    }
  }

  dynamic "docker" {
    for_each = var.target == "docker" ? [var.docker == null ? local.docker_defaults : var.docker] : []
    content {
      image   = docker.value.image
      network = docker.value.network
    }
  }
}

locals {
  docker_defaults = {
    image   = null
    network = null
  }
  proxmox_defaults = {
    node     = null
    template = null
    storage  = null
    bridge   = null
    vmid     = null
    ip       = null
    gateway  = null
  }
  aws_defaults = {
    ami                = null
    subnet_id          = null
    security_group_ids = null
    key_name           = null
    instance_type      = null
    spot               = null
    max_price          = null
  }
}

resource "launch_aws_security_group" "this" {
  count             = var.target == "aws" ? 1 : 0
  name              = "launch-${var.service_name}-${var.environment}"
  subnet_id         = try(var.aws.subnet_id, null)
  ingress_tcp_ports = distinct(concat(var.public ? [80, 443] : [], var.ingress_ports))
  tags              = var.tags
}
