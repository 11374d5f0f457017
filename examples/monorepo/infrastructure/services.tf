# One module block per directory under services/: the host that the deploy
# workflow's `launch deploy services/<name>` ships code to. service_name must
# match `name` in services/<name>/launch.toml.
module "hello" {
  source       = "../modules/launch-service"
  service_name = "hello"
  target       = "aws"

  # public = true adds a Cloudflare record <name>.<domain> and the URL
  # https://<name>.<domain> (set CLOUDFLARE_* first); something on the host
  # must then answer on 443, e.g. a proxied record or a TLS-terminating
  # container. Without it the service answers on its host's address.
  public = false

  # Existing groups that let port 8080 (or 80/443) in; a per-service group
  # managed by the module is planned.
  # aws = { security_group_ids = ["sg-0123456789abcdef0"] }
}

output "hello_instance_id" {
  value = module.hello.instance_id
}

output "hello_url" {
  value = module.hello.url
}
