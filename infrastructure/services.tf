# One module block per directory under services/. `launch deploy
# services/<name>` (the deploy workflow) ships code to the host made here.
module "librechat" {
  source       = "../modules/launch-service"
  service_name = "librechat"
  target       = "aws"
  public       = true
}
