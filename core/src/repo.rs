//! GitHub repository names (`owner/name`), as `launch deploy --repo` records
//! them on a release and the control plane matches them against webhook
//! deliveries: checked once here so the CLI refuses a bad one before upload
//! and the server refuses the same ones from any other client.

use crate::Error;

/// Checks `owner/name`: an owner of 1–39 letters, digits and single inner
/// hyphens, and a repository of 1–100 letters, digits, `.`, `-` and `_`
/// (not `.` or `..`).
pub fn validate_repo(value: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidName {
        what: "repository",
        value: value.to_owned(),
        reason: format!("{reason}; give it as owner/name, e.g. octo-org/monorepo"),
    };
    let Some((owner, name)) = value.split_once('/') else {
        return Err(invalid("there is no '/' between owner and name"));
    };
    let owner_ok = (1..=39).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--");
    if !owner_ok {
        return Err(invalid(
            "the owner must be 1 to 39 letters, digits or inner single hyphens",
        ));
    }
    let name_ok = (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != "..";
    if !name_ok {
        return Err(invalid(
            "the name must be 1 to 100 letters, digits, '.', '-' or '_'",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_owner_slash_name() {
        for good in ["octo-org/monorepo", "a/b", "me/my.repo_2", "x1/.github"] {
            assert!(validate_repo(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "monorepo",
            "/x",
            "x/",
            "a/b/c",
            "-a/b",
            "a-/b",
            "a--b/c",
            "a/..",
            "a/b c",
            "a b/c",
            "owner/na\u{e9}me",
        ] {
            let err = validate_repo(bad).expect_err(bad).to_string();
            assert!(err.contains("owner/name"), "{bad}: {err}");
        }
    }
}
