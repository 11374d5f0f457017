//! Compose's variable interpolation, applied to every string value of a
//! compose file before it means anything: `$$` is a literal `$`, `$VAR` and
//! `${VAR}` substitute, `${VAR:-default}` / `${VAR-default}` fall back when
//! the variable is unset or empty (`:`) or only unset, `${VAR:+other}` /
//! `${VAR+other}` substitute `other` when it is set, and `${VAR:?message}` /
//! `${VAR?message}` make the whole file an error. Defaults may themselves
//! hold variables. An unset variable without a default becomes the empty
//! string, as compose does, and is remembered so the caller can warn.

use std::collections::{BTreeMap, BTreeSet};

/// Stands in for a value that exists but is not known here (a secret whose
/// name the CLI knows but whose value only the host sees). Checks skip a
/// string holding it rather than guess.
pub const OPAQUE: char = '\u{1}';

/// The variables compose will see, as far as the caller knows them.
#[derive(Clone, Debug, Default)]
pub struct Variables {
    values: BTreeMap<String, String>,
    opaque: BTreeSet<String>,
}

impl Variables {
    pub fn new() -> Self {
        Variables::default()
    }

    /// A variable with a known value (later calls win, as later sources do).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.opaque.remove(&name);
        self.values.insert(name, value.into());
    }

    /// A variable that will be set on the host, with a value unknown here.
    pub fn set_opaque(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.values.remove(&name);
        self.opaque.insert(name);
    }

    /// Every `KEY=VALUE` line of a dotenv text (comments, blank lines and
    /// an `export ` prefix allowed; one level of quotes removed).
    pub fn set_dotenv(&mut self, text: &str) {
        for (name, value) in parse_dotenv(text) {
            self.set(name, value);
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        if self.opaque.contains(name) {
            return Some(OPAQUE.to_string());
        }
        self.values.get(name).cloned()
    }
}

/// The `KEY=VALUE` pairs of a dotenv text, in order.
pub fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        pairs.push((name.trim().to_owned(), value.to_owned()));
    }
    pairs
}

/// What went wrong while interpolating one string.
#[derive(Debug, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${VAR:?message}` with VAR unset (or empty).
    Required { name: String, message: String },
    /// A `${` without its `}`, or a name that is not a variable name.
    Syntax(String),
}

/// Interpolates `text`; unset variables without a default go into `unset`.
pub fn interpolate(
    text: &str,
    vars: &Variables,
    unset: &mut BTreeSet<String>,
) -> Result<String, InterpolationError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = closing_brace(after).ok_or_else(|| {
                InterpolationError::Syntax(format!(
                    "`${{{after}` has no closing `}}`: close it, or write `$$` for a literal `$`"
                ))
            })?;
            out.push_str(&braced(&after[..end], vars, unset)?);
            rest = &after[end + 1..];
        } else {
            let len = name_len(rest);
            if len == 0 {
                // A lone `$` (before a space, a digit, the end): compose keeps it.
                out.push('$');
            } else {
                let name = &rest[..len];
                out.push_str(&lookup(name, vars, unset));
                rest = &rest[len..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(name: &str, vars: &Variables, unset: &mut BTreeSet<String>) -> String {
    vars.get(name).unwrap_or_else(|| {
        unset.insert(name.to_owned());
        String::new()
    })
}

/// The index of the `}` closing a `${`, counting nested `${…}` in defaults.
fn closing_brace(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_len(text: &str) -> usize {
    let mut len = 0;
    for (i, c) in text.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

fn braced(
    inner: &str,
    vars: &Variables,
    unset: &mut BTreeSet<String>,
) -> Result<String, InterpolationError> {
    let len = name_len(inner);
    let name = &inner[..len];
    if name.is_empty() {
        return Err(InterpolationError::Syntax(format!(
            "`${{{inner}}}` does not start with a variable name: use letters, digits and '_'"
        )));
    }
    let op = &inner[len..];
    let value = vars.get(name);
    let (op, arg) = match op {
        "" => return Ok(lookup(name, vars, unset)),
        _ if op.starts_with(":-") || op.starts_with(":?") || op.starts_with(":+") => {
            (&op[..2], &op[2..])
        }
        _ if op.starts_with('-') || op.starts_with('?') || op.starts_with('+') => {
            (&op[..1], &op[1..])
        }
        _ => {
            return Err(InterpolationError::Syntax(format!(
                "`${{{inner}}}`: after the name compose accepts only :-, -, :?, ?, :+ or +"
            )));
        }
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let present = if op.starts_with(':') { non_empty } else { set };
    match op.trim_start_matches(':') {
        "-" if present => Ok(value.unwrap_or_default()),
        "-" => interpolate(arg, vars, unset),
        "+" if present => interpolate(arg, vars, unset),
        "+" => Ok(String::new()),
        _ if present => Ok(value.unwrap_or_default()),
        _ => Err(InterpolationError::Required {
            name: name.to_owned(),
            message: interpolate(arg, vars, unset)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(String, Vec<String>), InterpolationError> {
        let mut vars = Variables::new();
        vars.set("TAG", "1.2");
        vars.set("EMPTY", "");
        vars.set_opaque("TOKEN");
        let mut unset = BTreeSet::new();
        interpolate(text, &vars, &mut unset).map(|s| (s, unset.into_iter().collect()))
    }

    #[test]
    fn interpolation_follows_compose() {
        let cases = [
            ("plain", "plain"),
            ("$$HOME", "$HOME"),
            ("img:$TAG", "img:1.2"),
            ("img:${TAG}-x", "img:1.2-x"),
            ("${MISSING:-dflt}", "dflt"),
            ("${EMPTY:-dflt}", "dflt"),
            ("${EMPTY-dflt}", ""),
            ("${MISSING-${TAG}}", "1.2"),
            ("${TAG:+on}", "on"),
            ("${MISSING:+on}", ""),
            ("${TAG:?needed}", "1.2"),
            ("cost $ 5", "cost $ 5"),
            ("${TOKEN}", "\u{1}"),
        ];
        for (input, expected) in cases {
            assert_eq!(check(input).unwrap().0, expected, "{input}");
        }
    }

    #[test]
    fn unset_variables_are_reported_and_become_empty() {
        assert_eq!(
            check("${A}/$B/${C:-x}").unwrap(),
            ("//x".to_owned(), vec!["A".to_owned(), "B".to_owned()])
        );
    }

    #[test]
    fn required_and_malformed_variables_are_errors() {
        assert_eq!(
            check("${DB_URL:?set DB_URL in launch.toml}"),
            Err(InterpolationError::Required {
                name: "DB_URL".into(),
                message: "set DB_URL in launch.toml".into()
            })
        );
        assert!(matches!(
            check("${EMPTY:?x}"),
            Err(InterpolationError::Required { .. })
        ));
        assert_eq!(check("${EMPTY?x}").unwrap().0, "");
        assert!(matches!(check("${TAG"), Err(InterpolationError::Syntax(_))));
        assert!(matches!(check("${1X}"), Err(InterpolationError::Syntax(_))));
        assert!(matches!(
            check("${TAG/x/y}"),
            Err(InterpolationError::Syntax(_))
        ));
    }

    #[test]
    fn dotenv_lines_are_parsed_like_compose() {
        let pairs = parse_dotenv("# c\n\nA=1\nexport B = \"two words\"\nC='x'\nbroken\nD=\n");
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "".into())
            ]
        );
    }
}
