# One module block per directory under services/. `launch deploy
# services/<name>` (the deploy workflow) ships code to the host made here.
module "librechat" {
  source       = "../modules/launch-service"
  service_name = "librechat"
  target       = "aws"
  public       = true
}

output "librechat_url" {
  description = "https://librechat.<domain> once applied."
  value       = module.librechat.url
}

output "librechat_instance_id" {
  value = module.librechat.instance_id
}
