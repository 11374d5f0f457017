//! The `timeouts { create, update, delete }` block: Terraform's convention for
//! how long an operation may take, as Go-style durations ("20m", "1h30m").

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tf_provider::value::Value;

/// How long create waits for the instance and the agent when not told.
pub const DEFAULT_CREATE: Duration = Duration::from_secs(20 * 60);
pub const DEFAULT_UPDATE: Duration = Duration::from_secs(20 * 60);
pub const DEFAULT_DELETE: Duration = Duration::from_secs(20 * 60);

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Timeouts {
    pub create: Value<String>,
    pub update: Value<String>,
    pub delete: Value<String>,
}

/// The one `timeouts` block, if the configuration has it.
pub fn block(blocks: &Value<Vec<Timeouts>>) -> Timeouts {
    blocks
        .as_ref_option()
        .and_then(|b| b.first())
        .cloned()
        .unwrap_or_default()
}

/// Parses "20m", "1h30m", "90s" (also "1h 30m"); `None` when unset or unknown.
pub fn parse(value: &Value<String>) -> Result<Option<Duration>, String> {
    let Some(text) = value.as_ref_option() else {
        return Ok(None);
    };
    let spaced = spaced_units(text);
    match humantime::parse_duration(&spaced) {
        Ok(d) if d.is_zero() => Err(format!(
            "{text:?} is zero: give a positive duration such as \"20m\""
        )),
        Ok(d) => Ok(Some(d)),
        Err(_) => Err(format!(
            "{text:?} is not a duration: use a number with a unit, e.g. \"90s\", \"20m\" or \"1h30m\""
        )),
    }
}

/// humantime wants "1h 30m"; Terraform users write "1h30m".
fn spaced_units(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut previous_alpha = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() && previous_alpha {
            out.push(' ');
        }
        previous_alpha = c.is_ascii_alphabetic();
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse() {
        let v = |s: &str| Value::Value(s.to_owned());
        assert_eq!(parse(&v("20m")).unwrap(), Some(Duration::from_secs(1200)));
        assert_eq!(parse(&v("1h30m")).unwrap(), Some(Duration::from_secs(5400)));
        assert_eq!(parse(&v("45s")).unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(parse(&Value::Null).unwrap(), None);
    }

    #[test]
    fn nonsense_and_zero_are_refused_with_an_example() {
        let err = parse(&Value::Value("soon".into())).unwrap_err();
        assert!(err.contains("20m"), "{err}");
        assert!(parse(&Value::Value("0s".into())).is_err());
    }
}
