# One host for one service in one environment. The provider registers the
# service with the control plane, mints a single-use join token, stores the
# secrets and boots the host, whose agent registers with the labels
# service-name = var.service_name and environment = var.environment.
#
# A managed per-service AWS security group (80/443 open when public) is
# planned; until this module can create it, pass existing groups in
# aws.security_group_ids (default: the VPC's default group).
resource "launch_service" "this" {
  name           = var.service_name
  environment    = var.environment
  target         = var.target
  size           = var.size
  public         = var.public
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
    for_each = var.target == "aws" && var.aws != null ? [var.aws] : []
    content {
      ami                = aws.value.ami
      subnet_id          = aws.value.subnet_id
      security_group_ids = aws.value.security_group_ids
      key_name           = aws.value.key_name
      instance_type      = aws.value.instance_type
    }
  }
}
