//! The output discipline for text that comes from outside (task logs, stopped reasons, service events, AWS and
//! GitHub error messages, inputs, config values, commit subjects): one function per destination.
//!
//! - **The job log** (stdout and stderr): [`for_log`]. The runner reads every line it is given as a possible workflow
//!   command: a line that starts with `::` after any leading whitespace (the runner trims Unicode whitespace first),
//!   and the legacy `##[` form anywhere in a line. [`for_log`] puts a zero-width space (U+200B, not whitespace to the
//!   runner, invisible in the log) inside each of those, so the line reads the same and commands nothing. The
//!   logging layer and [`crate::github::runner::Runner`] pass everything they print through it; the only
//!   workflow commands the binary prints are its own, built by `Runner` with their data escaped.
//! - **The step summary** (markdown rendered by GitHub): one function per context. [`md_text`] for a table cell, a
//!   list item or a sentence (HTML and markdown metacharacters escaped, one line); [`md_code`] for an inline code
//!   span; [`md_code_block`] for a fenced block whose fence is longer than any backtick run inside.
//!
//! Redaction of secrets in external text (error bodies, URLs) is [`redact_url`] and [`shorten`].

use std::borrow::Cow;

/// The character that breaks a workflow command without changing how the line reads.
const ZWSP: char = '\u{200B}';

/// Text for the job log: no line of it is a workflow command (see the module docs).
///
/// ```
/// use deploy_action::text::for_log;
/// assert_eq!(for_log("plain line"), "plain line");
/// assert!(!for_log("  ::add-mask::x").trim_start().starts_with("::"));
/// assert!(!for_log("a ##[set-output name=x;]y").contains("##["));
/// ```
pub fn for_log(s: &str) -> Cow<'_, str> {
    if !s.split(['\n', '\r']).any(is_command_like) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find(['\n', '\r']).map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        out.push_str(&neutralise_line(line));
        rest = tail;
    }
    Cow::Owned(out)
}

/// Whether the runner could read this line as a workflow command.
fn is_command_like(line: &str) -> bool {
    line.trim_start().starts_with("::") || line.contains("##[")
}

fn neutralise_line(line: &str) -> Cow<'_, str> {
    if !is_command_like(line) {
        return Cow::Borrowed(line);
    }
    let lead = line.len() - line.trim_start().len();
    let (ws, body) = line.split_at(lead);
    let mut out = String::with_capacity(line.len() + 6);
    out.push_str(ws);
    if let Some(after) = body.strip_prefix(':') {
        if after.starts_with(':') {
            out.push(':');
            out.push(ZWSP);
            out.push_str(&after.replace("##[", "#\u{200B}#["));
            return Cow::Owned(out);
        }
    }
    out.push_str(&body.replace("##[", "#\u{200B}#["));
    Cow::Owned(out)
}

/// JSON for stdout: the serialised text with `#` inside `##[` written as `\u0023` (the same JSON value; a JSON
/// document has `#` only inside strings, and a one-line document never starts with `::`).
pub fn json_for_log(json: &str) -> Cow<'_, str> {
    if json.contains("##[") {
        Cow::Owned(json.replace("##[", "#\\u0023["))
    } else {
        Cow::Borrowed(json)
    }
}

/// Text inside a markdown table cell, a list item or a sentence of the step summary: one line, HTML and markdown
/// metacharacters escaped, so it renders as the characters it holds and is never a tag, a link, an image, a comment,
/// emphasis, a code span or (at its start) a heading, quote or list marker. (`|` is escaped by the table itself: [`crate::github::runner::md_table`].)
///
/// ```
/// use deploy_action::text::md_text;
/// assert_eq!(md_text("<img src=x onerror=alert(1)>"), "&lt;img src=x onerror=alert(1)&gt;");
/// assert_eq!(md_text("[x](javascript:alert(1))"), "\\[x\\](javascript:alert(1))");
/// assert_eq!(md_text("1. v1.2_rc"), "1\\. v1.2\\_rc");
/// assert_eq!(md_text("0.4s"), "0.4s");
/// ```
pub fn md_text(s: &str) -> String {
    let line = one_line(s);
    let mut out = String::with_capacity(line.len() + 8);
    // A block marker only counts at the start: a heading, a list item, a setext underline, an ordered list item.
    let lead = line.len() - line.trim_start().len();
    let body = &line[lead..];
    let digits = body.chars().take_while(char::is_ascii_digit).count();
    let marker = match body.chars().next() {
        Some('#' | '-' | '+' | '=') => Some(0),
        Some(_)
            if digits > 0
                && body[digits..].starts_with(['.', ')'])
                && body[digits + 1..]
                    .chars()
                    .next()
                    .is_none_or(char::is_whitespace) =>
        {
            Some(digits)
        }
        _ => None,
    };
    for (i, c) in line.char_indices() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '~' => {
                out.push('\\');
                out.push(c);
            }
            _ if marker.is_some_and(|m| i == lead + m) => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// An inline code span holding `s` verbatim on one line: the backtick run around it is longer than any inside, with
/// a space either side when `s` starts or ends with a backtick (markdown strips one).
///
/// ```
/// use deploy_action::text::md_code;
/// assert_eq!(md_code("v1.2"), "`v1.2`");
/// assert_eq!(md_code("a`b"), "``a`b``");
/// assert_eq!(md_code("`x"), "`` `x ``");
/// ```
pub fn md_code(s: &str) -> String {
    let s = one_line(s);
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    if s.is_empty() {
        return "` `".to_string();
    }
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A fenced code block holding `body` verbatim (each line as it is): the fence is longer than any backtick run in
/// the body, so no line can close it. `info` is the language tag ("" for none). Ends with a newline.
///
/// ```
/// use deploy_action::text::md_code_block;
/// assert_eq!(md_code_block("", "a\n```\nb"), "````\na\n```\nb\n````\n");
/// ```
pub fn md_code_block(info: &str, body: &str) -> String {
    let fence = "`".repeat((longest_run(body, '`') + 1).max(3));
    let info: String = info
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let body = body.trim_end_matches(['\n', '\r']);
    format!("{fence}{info}\n{body}\n{fence}\n")
}

/// A link destination for `[text](url)`: characters that could end the destination or the link (space, `(`, `)`,
/// `<`, `>`, `"`, `\\`, control characters) percent-encoded.
///
/// ```
/// assert_eq!(deploy_action::text::md_url("https://x/a b)(c"), "https://x/a%20b%29%28c");
/// ```
pub fn md_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for c in url.chars() {
        match c {
            ' ' | '(' | ')' | '<' | '>' | '"' | '\\' | '`' => {}
            c if c.is_control() => {}
            c => {
                out.push(c);
                continue;
            }
        }
        for b in c.encode_utf8(&mut [0; 4]).bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text on one line: CR, LF and other control characters become spaces.
fn one_line(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        if c == ch {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// `s` with every secret replaced by `***` (secrets shorter than 4 characters are left alone: they would blank
/// ordinary words). Webhook URLs are secrets whole: pass them as they are.
///
/// ```
/// assert_eq!(deploy_action::text::redact("token ghp_abc1 bad", &["ghp_abc1"]), "token *** bad");
/// ```
pub fn redact<S: AsRef<str>>(s: &str, secrets: &[S]) -> String {
    let mut out = s.to_string();
    for secret in secrets {
        let secret = secret.as_ref();
        if secret.chars().count() >= 4 && out.contains(secret) {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// The forms `secret` takes in a line that prints it inside other text, itself first: percent-encoded (an AWS query
/// body, a URL; either case of hex digits, a space also as `+`), XML-escaped (an AWS answer: text and attribute
/// forms), and escaped as Rust's `Debug` (the SDK's trace lines print requests and answers that way) and JSON print
/// a string. [`redact`] with all of them leaves none of them readable in a line.
///
/// ```
/// let forms = deploy_action::text::secret_forms("a\"b&c");
/// assert!(forms.contains(&"a\\\"b&c".to_string()) && forms.contains(&"a%22b%26c".to_string()));
/// ```
pub fn secret_forms(secret: &str) -> Vec<String> {
    let percent = |upper: bool| -> String {
        secret
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    let xml_text = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let xml_attr = xml_text.replace('"', "&quot;").replace('\'', "&apos;");
    let quoted = |q: String| q[1..q.len() - 1].to_string();
    let mut forms = vec![
        secret.to_string(),
        percent(true),
        percent(true).replace("%20", "+"),
        percent(false),
        xml_text,
        xml_attr,
        quoted(format!("{secret:?}")),
        quoted(serde_json::to_string(secret).unwrap_or_else(|_| format!("{secret:?}"))),
    ];
    let mut seen = std::collections::BTreeSet::new();
    forms.retain(|f| seen.insert(f.clone()));
    forms
}

/// External text (an error body, a message from a service) cut to `max` characters with "…" when longer, on one
/// line, with URLs' credentials and query strings removed ([`redact_url`] on every word that looks like a URL).
pub fn shorten(s: &str, max: usize) -> String {
    let line = one_line(s);
    let redacted: Vec<Cow<'_, str>> = line
        .split(' ')
        .map(|w| {
            if w.contains("://") {
                Cow::Owned(redact_url(w))
            } else {
                Cow::Borrowed(w)
            }
        })
        .collect();
    let joined = redacted.join(" ");
    if joined.chars().count() <= max {
        return joined;
    }
    let mut cut: String = joined.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A URL without what could be a secret: user info, path beyond the host (webhook URLs carry their token in the
/// path), query and fragment. `https://hooks.slack.com/services/T0/B0/xyz?x=1` → `https://hooks.slack.com/…`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if end < rest.len() {
        format!("{scheme}://{host}/…")
    } else {
        format!("{scheme}://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the runner (actions/runner `ActionCommand.TryParseV2` / `TryParse`) would read as a command.
    fn runner_sees_command(line: &str) -> bool {
        // .NET's Trim() removes Unicode whitespace, not U+200B.
        line.trim().starts_with("::") || line.contains("##[")
    }

    #[test]
    fn secret_forms_cover_how_a_line_can_carry_a_secret() {
        let plain = secret_forms("ghs_abc123");
        assert_eq!(plain, vec!["ghs_abc123".to_string()], "nothing to encode");
        let forms = secret_forms("Zm9v+Y/b= \"q\"&<x>'\\é");
        for form in [
            "Zm9v+Y/b= \"q\"&<x>'\\é",
            "Zm9v%2BY%2Fb%3D%20%22q%22%26%3Cx%3E%27%5C%C3%A9",
            "Zm9v%2BY%2Fb%3D+%22q%22%26%3Cx%3E%27%5C%C3%A9",
            "Zm9v%2bY%2fb%3d%20%22q%22%26%3cx%3e%27%5c%c3%a9",
            "Zm9v+Y/b= \"q\"&amp;&lt;x&gt;'\\é",
            "Zm9v+Y/b= &quot;q&quot;&amp;&lt;x&gt;&apos;\\é",
            "Zm9v+Y/b= \\\"q\\\"&<x>'\\\\é",
        ] {
            assert!(forms.contains(&form.to_string()), "{form:?} in {forms:#?}");
        }
        // A line with any of them, redacted with all of them, keeps none.
        for form in &forms {
            let line = format!("values: Some([\"{form}\"]) sent");
            let out = redact(&line, &forms);
            assert_eq!(out, "values: Some([\"***\"]) sent", "{form:?}");
        }
    }

    const HOSTILE: &[&str] = &[
        "::set-output name=x::y",
        "::add-mask::hunter2",
        "::stop-commands::tok",
        "  ::error::indented",
        "\t::warning::tab",
        "\u{00A0}\u{2003}::notice::unicode whitespace",
        "::",
        ":::",
        "x ##[set-output name=a;]b",
        "##[command]echo",
        "##[##[##[",
        "::a ##[b",
        "line\n::set-env name=A::1\n  ::add-mask::z",
        "crlf\r\n::debug::x\r\n",
        "lone cr\r::group::x",
    ];

    #[test]
    fn no_hostile_line_reaches_the_runner_as_a_command() {
        for s in HOSTILE {
            let out = for_log(s);
            for line in out.split(['\n', '\r']) {
                assert!(!runner_sees_command(line), "{s:?} -> {line:?}");
            }
            // The line reads the same once the zero-width spaces are taken out.
            assert_eq!(out.replace(ZWSP, ""), *s, "{s:?}");
            assert_eq!(out.lines().count(), s.lines().count(), "{s:?}");
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "",
            "hello",
            "a :: b",
            "time 12:00::00",
            "# heading",
            "C# [x]",
            "url https://x/y#[z]",
        ] {
            assert!(matches!(for_log(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn json_keeps_its_value() {
        let v = serde_json::json!({"line": "a ##[set-output name=x;]y", "n": "::x"});
        let s = serde_json::to_string(&v).unwrap();
        let out = json_for_log(&s);
        assert!(!out.contains("##["));
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), v);
    }

    /// Markdown that would be markup, a link, HTML, a comment, a fence or a block marker.
    const HOSTILE_MD: &[&str] = &[
        "<img src=x onerror=alert(1)>",
        "[x](javascript:alert(1))",
        "![i](https://evil/x.png)",
        "<details><summary>open</summary>",
        "<!-- hide the rest",
        "**bold** _em_ ~~s~~",
        "```\nclosed the fence",
        "`code`",
        "# heading",
        "- item\n- item",
        "1. one",
        "> quote",
        "a | b | c",
        "javascript:alert(1)",
        "https://evil.example/",
        "&lt;already&gt;",
        "\\*escaped\\*",
        "line\nbreak\r\nand <b>",
    ];

    #[test]
    fn md_text_has_no_markup_left() {
        for s in HOSTILE_MD {
            let out = md_text(s);
            assert!(!out.contains(['<', '>', '\n', '\r']), "{s:?} -> {out}");
            // Every metacharacter is escaped: removing escapes and entities gives the text back.
            let unescaped = unescape_md(&out);
            assert_eq!(unescaped, one_line(s), "{s:?} -> {out}");
            for c in ['`', '*', '_', '[', ']', '~'] {
                let mut prev = ' ';
                for ch in out.chars() {
                    if ch == c {
                        assert_eq!(prev, '\\', "{s:?} -> {out}: unescaped {c}");
                    }
                    prev = if prev == '\\' && ch == '\\' { ' ' } else { ch };
                }
            }
        }
    }

    fn unescape_md(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.extend(chars.next());
            } else {
                out.push(c);
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    #[test]
    fn code_spans_and_blocks_cannot_be_closed_from_inside() {
        for s in HOSTILE_MD.iter().chain(["``", "a ``` b", "````x"].iter()) {
            let span = md_code(s);
            let fence = span.chars().take_while(|c| *c == '`').count();
            assert!(fence > longest_run(&one_line(s), '`'), "{s:?} -> {span}");
            assert!(!span.contains('\n'));
            let block = md_code_block("text", s);
            let fence = block.chars().take_while(|c| *c == '`').count();
            assert!(
                fence >= 3 && fence > longest_run(s, '`'),
                "{s:?} -> {block}"
            );
            assert!(block.ends_with(&format!("\n{}\n", "`".repeat(fence))));
            // No line inside is a closing fence.
            let inner: Vec<&str> = block.lines().collect();
            for l in &inner[1..inner.len() - 1] {
                assert!(
                    l.trim().chars().take_while(|c| *c == '`').count() < fence,
                    "{l}"
                );
            }
        }
        assert_eq!(md_code(""), "` `");
        assert_eq!(md_code_block("x`y", "a"), "```xy\na\n```\n");
    }

    #[test]
    fn urls_lose_their_secrets() {
        for (url, want) in [
            (
                "https://hooks.slack.com/services/T0/B0/secret",
                "https://hooks.slack.com/…",
            ),
            ("https://user:pw@host.example", "https://host.example"),
            ("https://host/?token=abc", "https://host/…"),
            ("https://host#frag", "https://host/…"),
            ("no url", "no url"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
        assert_eq!(
            shorten("bad token at https://x.example/t/abc?k=1\nsecond line", 100),
            "bad token at https://x.example/… second line"
        );
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
