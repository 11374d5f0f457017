terraform {
  # use_lockfile (S3-native state locking) in backend.tf needs terraform 1.10.
  required_version = ">= 1.10"

  # Launch is the only provider: the module needs nothing else, so this root
  # initialises without reaching any other registry.
  required_providers {
    launch = {
      source = "launch/launch"
    }
  }
}
