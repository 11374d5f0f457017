//! Log text as HTML: every character escaped, ANSI SGR colour codes (the
//! 8 + 8 bright foreground colours, bold, reset) turned into `<span>`s with
//! classes the stylesheet colours, every other escape sequence dropped.
//! What a container prints can never become markup.

use std::fmt::Write as _;

/// `text` as escaped HTML with its colours as `ansi-*` classes.
pub fn to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut open = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() != Some(&'[') {
                continue;
            }
            chars.next();
            let mut params = String::new();
            let mut end = None;
            for c in chars.by_ref() {
                if c.is_ascii_digit() || c == ';' {
                    params.push(c);
                } else {
                    end = Some(c);
                    break;
                }
            }
            if end != Some('m') {
                continue;
            }
            if open {
                out.push_str("</span>");
                open = false;
            }
            let classes: Vec<String> = params
                .split(';')
                .filter_map(|code| code.parse::<u8>().ok())
                .filter_map(class)
                .collect();
            if !classes.is_empty() {
                let _ = write!(out, "<span class=\"{}\">", classes.join(" "));
                open = true;
            }
            continue;
        }
        escape_char(c, &mut out);
    }
    if open {
        out.push_str("</span>");
    }
    out
}

fn class(code: u8) -> Option<String> {
    match code {
        1 => Some("ansi-bold".to_owned()),
        30..=37 => Some(format!("ansi-{}", code - 30)),
        90..=97 => Some(format!("ansi-{}", code - 90 + 8)),
        _ => None,
    }
}

/// Escapes one character for HTML text and attribute values.
pub fn escape_char(c: char, out: &mut String) {
    match c {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c if c.is_control() && c != '\t' => {}
        c => out.push(c),
    }
}

#[cfg(test)]
mod tests {
    use super::to_html;

    #[test]
    fn colours_become_classes_and_markup_is_escaped() {
        let table = [
            ("plain", "plain"),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                "\u{1b}[31mred\u{1b}[0m done",
                "<span class=\"ansi-1\">red</span> done",
            ),
            (
                "\u{1b}[1;92mok\u{1b}[m",
                "<span class=\"ansi-bold ansi-10\">ok</span>",
            ),
            ("\u{1b}[2Kcleared", "cleared"),
            ("\u{1b}[31m<b>", "<span class=\"ansi-1\">&lt;b&gt;</span>"),
        ];
        for (input, want) in table {
            assert_eq!(to_html(input), want, "{input:?}");
        }
    }
}
