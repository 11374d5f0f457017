output "url" {
  description = "https://<fqdn> when public = true (served by the host agent's front door, its certificate from ACME), else null."
  value       = launch_service.this.url
}

output "fqdn" {
  description = "DNS name of the Cloudflare record when public = true (e.g. librechat.example.com), else null."
  value       = launch_service.this.fqdn
}

output "instance_id" {
  description = "ID of the host (EC2 instance ID for target = \"aws\")."
  value       = launch_service.this.instance_id
}

output "agent_id" {
  description = "ID of the host's agent in the control plane; null when wait_for_agent = false."
  value       = launch_service.this.agent_id
}

output "private_ip" {
  description = "Private IPv4 address of the host."
  value       = launch_service.this.private_ip
}

output "public_ip" {
  description = "Public IPv4 address of the host, or null if its subnet assigns none."
  value       = launch_service.this.public_ip
}

output "security_group_id" {
  description = "ID of the service's own security group (target = \"aws\"), else null."
  value       = one(launch_aws_security_group.this[*].id)
}
