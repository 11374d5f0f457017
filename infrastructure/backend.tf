# State lives in S3 and is locked with an S3 lock file (use_lockfile), so no
# DynamoDB table is needed. The state holds every service's secrets (marked
# sensitive, not encrypted): keep the bucket private and encrypted.
#
# Bucket, key and region come from the environment of whoever runs terraform
# (CI passes them with -backend-config), so nothing account-specific is
# committed:
#
#   terraform init \
#     -backend-config="bucket=my-launch-state" \
#     -backend-config="key=infrastructure/terraform.tfstate" \
#     -backend-config="region=eu-west-1"
#
# Cloudflare R2 instead of S3: same backend, R2's S3-compatible endpoint, and
# the checks R2 does not implement turned off. Credentials are an R2 API
# token's access key pair in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
#
#   terraform {
#     backend "s3" {
#       bucket                      = "my-launch-state"
#       key                         = "infrastructure/terraform.tfstate"
#       region                      = "auto"
#       endpoints                   = { s3 = "https://<ACCOUNT_ID>.r2.cloudflarestorage.com" }
#       use_lockfile                = true
#       use_path_style              = true
#       skip_credentials_validation = true
#       skip_region_validation      = true
#       skip_requesting_account_id  = true
#       skip_metadata_api_check     = true
#       skip_s3_checksum            = true
#     }
#   }
terraform {
  backend "s3" {
    key          = "infrastructure/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
