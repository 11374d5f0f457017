terraform {
  # optional() object attributes need terraform 1.3.
  required_version = ">= 1.3"

  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}
