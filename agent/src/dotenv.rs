//! The `.env` the agent writes for compose, encoded for the compose that
//! reads it, so every value reaches the containers byte for byte.
//!
//! Compose reads `.env` (and `env_file:`) with its own dotenv parser, and the
//! two versions disagree:
//! - v1 (`docker-compose`, python-dotenv 0.13–0.21): `${NAME}` and
//!   `${NAME:-default}` are expanded in every value, quoted or not, with no
//!   escape; inside double quotes `\\`, `\"`, `\n`, `\r` are escapes; the
//!   closing-quote regex takes `\\"` for an escaped quote. So a value is
//!   double-quoted, each `$` is written `${:-$}` (the unset empty name's
//!   default, which expands to a lone `$`), and a trailing backslash is
//!   written `${:-\\}` so no backslash stands before the closing quote.
//! - v2 (the plugin, compose-go's dotenv): single-quoted values are literal
//!   but cannot hold a `'`; double-quoted values take `\\`, `\"`, `\n`,
//!   `\r` escapes and are interpolated, with `$$` for a literal `$`. So a
//!   value is double-quoted with those escapes and each `$` doubled.
//!
//! Newlines are always escaped: every variable is one line. [`decode`] reads
//! either encoding back (and the single-quoted values older agents wrote).

use std::collections::BTreeMap;

use crate::compose::Flavor;

/// `KEY="value"` lines for `vars`, encoded for `flavor`, after `header`.
pub fn encode(header: &str, vars: &BTreeMap<String, String>, flavor: Flavor) -> String {
    let mut out = String::from(header);
    for (key, value) in vars {
        out.push_str(key);
        out.push('=');
        out.push_str(&quote(value, flavor));
        out.push('\n');
    }
    out
}

/// One value, quoted for `flavor` (see the module doc).
pub fn quote(value: &str, flavor: Flavor) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, flavor) {
            ('\\', Flavor::Standalone) if chars.peek().is_none() => out.push_str("${:-\\\\}"),
            ('\\', _) => out.push_str("\\\\"),
            ('"', _) => out.push_str("\\\""),
            ('\n', _) => out.push_str("\\n"),
            ('\r', _) => out.push_str("\\r"),
            ('$', Flavor::Standalone) => out.push_str("${:-$}"),
            ('$', Flavor::Plugin) => out.push_str("$$"),
            (c, _) => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The variables of a `.env` that [`encode`] wrote (for either flavor).
/// Lines it cannot read are skipped.
pub fn decode(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter_map(|(key, quoted)| Some((key.to_owned(), unquote(quoted)?)))
        .collect()
}

/// The inverse of [`quote`], for both flavors: `\n`, `\r`, `\X` → X,
/// `${:-$}` and `$$` → `$`, `${:-\\}` → `\`.
fn unquote(quoted: &str) -> Option<String> {
    if let Some(inner) = quoted.strip_prefix('\'').and_then(|q| q.strip_suffix('\'')) {
        return Some(inner.to_owned());
    }
    let mut rest = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(rest.len());
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                let escaped = rest.chars().next()?;
                rest = &rest[escaped.len_utf8()..];
                out.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    other => other,
                });
            }
            '$' => {
                let (token, value) = [("{:-$}", '$'), ("{:-\\\\}", '\\'), ("$", '$')]
                    .into_iter()
                    .find(|(token, _)| rest.starts_with(token))
                    .unwrap_or(("", '$'));
                rest = &rest[token.len()..];
                out.push(value);
            }
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests;
