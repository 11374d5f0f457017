# A service on a Docker engine: the host is a systemd container on the engine
# (the local one unless docker { host } or DOCKER_HOST says otherwise),
# bootstrapped through docker exec with the same script EC2 user-data runs;
# the service's containers run beside it. The host image must already be on
# the engine: tests/host-image/build.sh builds one and prints its tag.
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
  docker {
    # host = "ssh://me@homelab" # or DOCKER_HOST; default the local socket
  }
}

variable "host_image" {
  description = "The host image on the engine, e.g. the tag tests/host-image/build.sh prints."
  type        = string
}

module "hello" {
  source = "../../modules/launch-service"

  service_name = "hello"
  target       = "docker"
  size         = "small"

  docker = {
    image = var.host_image
  }
}

output "agent_id" {
  value = module.hello.agent_id
}
