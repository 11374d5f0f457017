# One module block per directory under services/: the host that the deploy
# workflow's `launch deploy services/<name>` ships code to. service_name must
# match `name` in services/<name>/launch.toml.
module "hello" {
  source       = "../modules/launch-service"
  service_name = "hello"
  target       = "aws"

  # public = true adds a Cloudflare record <name>.<domain> and the URL
  # https://<name>.<domain> (set CLOUDFLARE_* first), served by the host
  # agent's front door with a Let's Encrypt certificate; the module's own
  # security group then opens 80 and 443. Without it the service answers on
  # its host's address, on the ports in ingress_ports.
  public = false

  # ingress_ports = [8080]
  # More security groups to attach, e.g. one allowing SSH from your office:
  # aws = { security_group_ids = ["sg-0123456789abcdef0"] }
}

output "hello_instance_id" {
  value = module.hello.instance_id
}

output "hello_url" {
  value = module.hello.url
}
