//! The encoding against each compose's dotenv reader: v1 is this host's own
//! docker-compose (its `env_vars_from_file`, which reads both the project
//! `.env` and `env_file:`), run as a real peer; v2 (the plugin, absent on
//! this host) is a model of compose-go's documented rules
//! (docs.docker.com/compose/environment-variables/variable-interpolation and
//! the env-file syntax page; `dotenv/parser.go`).

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// Every character a dotenv parser treats specially, and a few it should not.
const SPECIAL: &[&str] = &[
    "plain",
    "",
    "it's",
    "\"double\"",
    "back\\slash",
    "\\\\",
    "ends with \\",
    "\\",
    "\\\"",
    "$",
    "$$",
    "$HOME",
    "${HOME}",
    "${NOPE:-default}",
    "${UNCLOSED",
    "${:-$}{x}",
    "$${HOME}",
    "#hash",
    " # not a comment",
    "a=b",
    "`tick`",
    "  spaces  ",
    "tab\tend",
    "line\nbreak\n",
    "cr\rlf\r\n",
    "\\n literal",
    "\\0123 octal",
    "é ✓",
    "it's \"all\" \\ $ ${HOME} $$ # = ` \n '${X}' \\",
];

/// What compose v2 reads from one `KEY="…"` value: compose-go's scan to the
/// closing quote (a backslash escapes the next character; `\"` is a quote),
/// its escapes (`\\`, `\"`, `\n`, `\r`, `\t`, `\$`; others stay), then
/// interpolation, where `$$` is a literal `$`. `None` when the value would
/// interpolate a variable (a `$` not written `$$`) or never closes.
fn compose_v2_reads(quoted: &str) -> Option<String> {
    let body = quoted.strip_prefix('"')?;
    let mut scanned = String::new();
    let mut escape = false;
    let mut closed = None;
    for (at, c) in body.char_indices() {
        if c == '"' && !escape {
            closed = Some(at);
            break;
        }
        if c == '\\' && !escape {
            escape = true;
            continue;
        }
        if escape && c != '"' {
            scanned.push('\\');
        }
        escape = false;
        scanned.push(c);
    }
    if closed? + 1 != body.len() {
        return None;
    }
    let mut unescaped = String::new();
    let mut chars = scanned.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            unescaped.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => unescaped.push('\n'),
            Some('r') => unescaped.push('\r'),
            Some('t') => unescaped.push('\t'),
            Some('$') => unescaped.push_str("$$"),
            Some(c @ ('\\' | '"')) => unescaped.push(c),
            Some(other) => {
                unescaped.push('\\');
                unescaped.push(other);
            }
            None => unescaped.push('\\'),
        }
    }
    let mut out = String::new();
    let mut chars = unescaped.chars();
    while let Some(c) = chars.next() {
        if c == '$' && chars.next() != Some('$') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// What this host's docker-compose v1 reads from a `.env` file.
fn compose_v1_reads(text: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, text).unwrap();
    let script = "import json, sys\n\
                  from compose.config.environment import env_vars_from_file\n\
                  print(json.dumps(env_vars_from_file(sys.argv[1])))";
    let output = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("run /usr/bin/python3 (docker-compose v1 is Python: install docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose v1's env reader failed (is docker-compose installed?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn vars(values: &[&str]) -> BTreeMap<String, String> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), (*v).to_owned()))
        .collect()
}

#[test]
fn compose_v1_reads_every_special_value_unchanged() {
    let vars = vars(SPECIAL);
    let read = compose_v1_reads(&encode("# header\n", &vars, Flavor::Standalone));
    for (key, value) in &vars {
        assert_eq!(read.get(key), Some(value), "{key}: {value:?}");
    }
}

#[test]
fn compose_v2_reads_every_special_value_unchanged() {
    for value in SPECIAL {
        let quoted = quote(value, Flavor::Plugin);
        assert_eq!(
            compose_v2_reads(&quoted).as_deref(),
            Some(*value),
            "{quoted}"
        );
    }
}

#[test]
fn the_v2_model_is_compose_gos_documented_rules() {
    // Positive controls, from the env-file syntax page.
    assert_eq!(
        compose_v2_reads(r#""{\"hello\": \"json\"}""#).unwrap(),
        r#"{"hello": "json"}"#
    );
    assert_eq!(compose_v2_reads(r#""some\tvalue""#).unwrap(), "some\tvalue");
    assert_eq!(compose_v2_reads(r#""a\\b""#).unwrap(), "a\\b");
    assert_eq!(compose_v2_reads(r#""$$HOME""#).unwrap(), "$HOME");
    assert_eq!(compose_v2_reads(r#""\$HOME""#).unwrap(), "$HOME");
    // What the old quoting wrote would be interpolated or cut short.
    assert_eq!(compose_v2_reads(r#""${HOME}""#), None);
    assert_eq!(compose_v2_reads(r#""a" b""#), None);
}

#[test]
fn decode_reads_back_what_encode_wrote_for_both_flavors() {
    let vars = vars(SPECIAL);
    for flavor in [Flavor::Standalone, Flavor::Plugin] {
        assert_eq!(decode(&encode("# h\n", &vars, flavor)), vars, "{flavor:?}");
    }
    assert_eq!(
        decode("A='older agents wrote $this'\n")["A"],
        "older agents wrote $this"
    );
}

proptest! {
    #[test]
    fn any_value_survives_v2_and_decode(value in "[a-z'\"\\\\$#={}:\\- `\t\n\r]{0,24}") {
        let quoted = quote(&value, Flavor::Plugin);
        prop_assert_eq!(compose_v2_reads(&quoted), Some(value.clone()));
        for flavor in [Flavor::Standalone, Flavor::Plugin] {
            let vars = BTreeMap::from([("K".to_owned(), value.clone())]);
            prop_assert_eq!(decode(&encode("", &vars, flavor)), vars);
        }
    }
}

#[test]
fn random_values_survive_compose_v1() {
    // One python run for many values: random strings over the special alphabet.
    let alphabet: Vec<char> = "a'\"\\$#={}:- `\t\n\rxé".chars().collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let values: Vec<String> = (0..300)
        .map(|_| {
            let len = next() % 16;
            (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect()
        })
        .collect();
    let vars: BTreeMap<String, String> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("V{i}"), v))
        .collect();
    let read = compose_v1_reads(&encode("", &vars, Flavor::Standalone));
    for (key, value) in &vars {
        assert_eq!(read.get(key), Some(value), "{key}: {value:?}");
    }
}
