//! Secret values never leave the agent or the control plane in a log line.
//! A [`Redactor`] is built from a service's secret values and replaces every
//! occurrence with `[REDACTED]`, in one pass over the line however many
//! secrets there are. Multi-line values (PEM keys) are also matched line by
//! line, because logs are split into lines before they are redacted.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};

pub const MASK: &str = "[REDACTED]";

/// Lines of a multi-line secret shorter than this are too generic to match alone.
const MIN_LINE_OF_MULTILINE_SECRET: usize = 8;

#[derive(Clone, Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// Builds a redactor for these secret values; empty values are ignored.
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<&str> = Vec::new();
        for value in secrets {
            if value.is_empty() {
                continue;
            }
            patterns.push(value);
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(str::trim)
                        .filter(|line| line.len() >= MIN_LINE_OF_MULTILINE_SECRET),
                );
            }
        }
        if patterns.is_empty() {
            return Redactor { matcher: None };
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("plain literal patterns always build");
        Redactor {
            matcher: Some(matcher),
        }
    }

    /// True when there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret value replaced by [`MASK`]; borrowed when clean.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        if !matcher.is_match(text) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        matcher.replace_all_with(text, &mut out, |_, _, dst| {
            dst.push_str(MASK);
            true
        });
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_secret_value_and_leaves_clean_lines_borrowed() {
        let redactor = Redactor::new(["hunter2", "s3cr3t-token", ""]);
        assert_eq!(
            redactor.redact("password=hunter2 token=s3cr3t-token again hunter2"),
            "password=[REDACTED] token=[REDACTED] again [REDACTED]"
        );
        assert!(matches!(redactor.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn prefers_the_longest_overlapping_secret() {
        let redactor = Redactor::new(["abc", "abcdef"]);
        assert_eq!(redactor.redact("xabcdefx"), "x[REDACTED]x");
    }

    #[test]
    fn matches_lines_of_multiline_secrets() {
        let key = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\n-----END KEY-----";
        let redactor = Redactor::new([key]);
        assert_eq!(
            redactor.redact("  MIIEvQIBADANBgkqhkiG9w0B"),
            "  [REDACTED]"
        );
    }

    #[test]
    fn empty_redactor_changes_nothing() {
        let redactor = Redactor::new([""]);
        assert!(redactor.is_empty());
        assert_eq!(redactor.redact("hunter2"), "hunter2");
    }
}
