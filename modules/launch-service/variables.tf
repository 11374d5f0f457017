variable "service_name" {
  description = "Service name: the agent's service-name label and the directory under services/. A DNS label: 1 to 63 lower-case letters, digits and -, starting with a letter."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.service_name))
    error_message = "service_name must be a DNS label: 1 to 63 lower-case letters, digits and -, starting with a letter and not ending with -."
  }
}

variable "target" {
  description = "Where the host runs: aws (an EC2 instance), proxmox (an LXC container on Proxmox VE, bootstrapped over SSH) or docker (a systemd container on a Docker engine, bootstrapped through docker exec)."
  type        = string

  validation {
    condition     = contains(["aws", "proxmox", "docker"], var.target)
    error_message = "target must be \"aws\", \"proxmox\" or \"docker\"."
  }
}

variable "previews" {
  description = "Whether pull-request previews (launch deploy --preview pr-123) get DNS: with public = true, a DNS-only wildcard record *.<fqdn> pointing at the host."
  type        = bool
  default     = false
}

variable "public" {
  description = "Whether the service gets a Cloudflare DNS record (<service_name>.<domain> in prod, <service_name>-<environment>.<domain> elsewhere) and an https URL. Needs the provider's cloudflare {} block or CLOUDFLARE_* variables."
  type        = bool
  default     = false
}

variable "size" {
  description = "small, medium or large (on AWS t3.small, t3.medium, t3.large). aws.instance_type overrides it."
  type        = string
  default     = "small"

  validation {
    condition     = contains(["small", "medium", "large"], var.size)
    error_message = "size must be \"small\", \"medium\" or \"large\"; for another instance type set aws = { instance_type = \"...\" }."
  }
}

variable "secrets" {
  description = "Environment variables for the service's containers, stored encrypted by the control plane and written to the release's .env on the host."
  type        = map(string)
  default     = {}
  sensitive   = true
}

variable "environment" {
  description = "Environment: the agent's environment label, a DNS label like service_name."
  type        = string
  default     = "prod"
}

variable "tags" {
  description = "Extra tags for the host. Name, launch:* and aws:* are reserved."
  type        = map(string)
  default     = {}
}

variable "wait_for_agent" {
  description = "Whether apply waits until the host's agent has registered with the control plane. Set false when nothing will boot the host's agent during apply (tests, emulators)."
  type        = bool
  default     = true
}

variable "dns" {
  description = "Settings of the Cloudflare record when public = true: proxied (default false), allow_overwrite (default false: an existing record of the same name fails the apply), ttl (1 = automatic, the default, or 30 to 86400)."
  type = object({
    proxied         = optional(bool)
    allow_overwrite = optional(bool)
    ttl             = optional(number)
  })
  default = null
}

variable "aws" {
  description = "Settings for target = \"aws\". Every attribute is optional; unset means the provider's default (newest Debian 12 AMI, default VPC subnet). security_group_ids are attached besides the module's own group."
  type = object({
    ami                = optional(string)
    subnet_id          = optional(string)
    security_group_ids = optional(list(string))
    key_name           = optional(string)
    instance_type      = optional(string)
    spot               = optional(bool)
    max_price          = optional(string)
  })
  default = null
}

variable "ingress_ports" {
  description = "Extra TCP ports the AWS security group (or the Proxmox container's firewall) opens to 0.0.0.0/0 (80 and 443 are opened when public = true)."
  type        = list(number)
  default     = []
}

variable "proxmox" {
  description = "Settings for target = \"proxmox\": node and template are required; storage, bridge, vmid, and ip/gateway (static address; default DHCP) are optional. size sets cores, memory and disk."
  type = object({
    node     = optional(string)
    template = optional(string)
    storage  = optional(string)
    bridge   = optional(string)
    vmid     = optional(number)
    ip       = optional(string)
    gateway  = optional(string)
  })
  default = null
}

variable "docker" {
  description = "Settings for target = \"docker\": image (required by the provider) is a host image already on the engine (systemd, curl, a docker CLI with compose); network defaults to host. size sets CPU and memory limits."
  type = object({
    image   = optional(string)
    network = optional(string)
  })
  default = null
}
