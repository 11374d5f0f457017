//! The AMI a host boots when `aws { ami }` is not set: the newest official
//! Debian 12 image, else the newest Ubuntu LTS, for x86_64, each from its
//! publisher's account so a look-alike image can never be picked.

use aws_sdk_ec2::types::{Filter, Image};

use super::{Ec2, Ec2Error};

/// Debian's AWS account, publisher of the official Debian AMIs.
pub(super) const DEBIAN_OWNER: &str = "136693071363";
/// Canonical's AWS account, publisher of the official Ubuntu AMIs.
pub(super) const CANONICAL_OWNER: &str = "099720109477";

impl Ec2 {
    /// The newest Debian 12 AMI, else the newest Ubuntu LTS, for x86_64.
    pub async fn default_ami(&self) -> Result<String, Ec2Error> {
        let debian = self.images(DEBIAN_OWNER, "debian-12-amd64-*").await?;
        if let Some(image) = debian
            .iter()
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()))
        {
            return Ok(image.image_id().unwrap_or_default().to_owned());
        }
        let ubuntu = self
            .images(CANONICAL_OWNER, "ubuntu/images/*ubuntu-*-amd64-server-*")
            .await?;
        ubuntu
            .iter()
            .filter_map(|image| Some((ubuntu_lts_version(image.name()?)?, image)))
            .max_by(|(va, a), (vb, b)| va.cmp(vb).then(a.creation_date().cmp(&b.creation_date())))
            .and_then(|(_, image)| image.image_id().map(str::to_owned))
            .ok_or(Ec2Error::NoDefaultAmi)
    }

    async fn images(&self, owner: &str, name: &str) -> Result<Vec<Image>, Ec2Error> {
        let filter = |k: &str, v: &str| Filter::builder().name(k).values(v).build();
        let reply = self
            .client
            .describe_images()
            .owners(owner)
            .filters(filter("name", name))
            .filters(filter("architecture", "x86_64"))
            .filters(filter("state", "available"))
            .send()
            .await
            .map_err(|e| Ec2Error::call("DescribeImages", e))?;
        Ok(reply.images.unwrap_or_default())
    }
}

/// `(24, 4)` for ".../ubuntu-noble-24.04-amd64-server-…": LTS releases are
/// the April releases of even years. Interim releases give `None`.
fn ubuntu_lts_version(name: &str) -> Option<(u32, u32)> {
    name.split('-').find_map(|part| {
        let (year, month) = part.split_once('.')?;
        let (year, month): (u32, u32) = (year.parse().ok()?, month.parse().ok()?);
        (month == 4 && year % 2 == 0).then_some((year, month))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_april_releases_of_even_years_are_lts() {
        assert_eq!(
            ubuntu_lts_version(
                "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20240423"
            ),
            Some((24, 4))
        );
        assert_eq!(
            ubuntu_lts_version("ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20170721"),
            Some((16, 4))
        );
        assert_eq!(
            ubuntu_lts_version("ubuntu/images/hvm-ssd/ubuntu-plucky-25.04-amd64-server-20250401"),
            None
        );
        assert_eq!(
            ubuntu_lts_version("ubuntu/images/hvm-ssd/ubuntu-jammy-22.10-amd64-server-1"),
            None
        );
    }
}
