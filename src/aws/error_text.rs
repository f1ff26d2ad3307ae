//! An error's message as it may be shown to whoever reads the landing page: one line, at most
//! [`SHOWN_MESSAGE_CHARS`] characters, with anything that looks like a credential redacted.
//!
//! The service's messages name principals, roles and portals (`User: arn:aws:sts::...:assumed-role/
//! ... is not authorized to perform: workspaces-web:GetSession on resource: ...`), which is what an
//! operator needs to fix a policy; they never carry a secret key, but a broken endpoint or an SDK
//! error could echo anything, so access key ids and long random-looking strings (secret keys,
//! session tokens) are replaced. The exporter never sends a username, so only a response that
//! fails to parse could echo one: with hashed usernames, quoted text is replaced too.

/// Longest message shown, in characters.
pub const SHOWN_MESSAGE_CHARS: usize = 200;

/// What replaces a redacted part.
const REDACTED: &str = "[redacted]";

/// Prefixes of AWS access key ids (`AKIA...`, `ASIA...`) and other unique ids of IAM.
const KEY_ID_PREFIXES: [&str; 4] = ["AKIA", "ASIA", "ABIA", "ACCA"];

/// `message` as it may be shown: control characters as spaces, credential-like words redacted
/// (and, with `hide_quoted`, quoted text), at most [`SHOWN_MESSAGE_CHARS`] characters.
pub fn shown_message(message: &str, hide_quoted: bool) -> String {
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let unquoted = if hide_quoted {
        without_quoted(&one_line)
    } else {
        one_line
    };
    let mut out = String::with_capacity(unquoted.len().min(4 * SHOWN_MESSAGE_CHARS));
    let mut word = String::new();
    for c in unquoted.chars() {
        if is_secret_char(c) {
            word.push(c);
            continue;
        }
        push_word(&mut out, &mut word);
        out.push(c);
    }
    push_word(&mut out, &mut word);
    out.trim().chars().take(SHOWN_MESSAGE_CHARS).collect()
}

/// Characters of access keys, secret keys and base64 session tokens.
fn is_secret_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')
}

/// Appends `word` to `out`, redacted when it looks like a credential, and empties it.
fn push_word(out: &mut String, word: &mut String) {
    if looks_secret(word) {
        out.push_str(REDACTED);
    } else {
        out.push_str(word);
    }
    word.clear();
}

/// An access key id (a known prefix and 16 more upper-case letters or digits), or a long string
/// of letters and digits mixed (a secret access key has 40, session tokens hundreds).
fn looks_secret(word: &str) -> bool {
    let key_id = word.len() == 20
        && KEY_ID_PREFIXES.iter().any(|p| word.starts_with(p))
        && word
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let random = word.len() >= 40
        && word.bytes().any(|b| b.is_ascii_digit())
        && word.bytes().any(|b| b.is_ascii_alphabetic());
    key_id || random
}

/// `text` with every quoted part (`"..."`, `'...'`, `` `...` ``) replaced; an unclosed quote
/// hides the rest.
fn without_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<char> = None;
    for c in text.chars() {
        match open {
            Some(q) if c == q => open = None,
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '`') => {
                open = Some(c);
                out.push_str(REDACTED);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_messages_are_kept_as_they_are() {
        let m = "User: arn:aws:sts::123456789012:assumed-role/wsw/i-0abc is not authorized to perform: workspaces-web:GetSession on resource: arn:aws:workspaces-web:us-east-1:123456789012:portal/aaaaaaaa-0000-4000-8000-000000000001";
        assert_eq!(
            shown_message(m, false),
            m.chars().take(200).collect::<String>()
        );
        assert_eq!(shown_message(m, true), shown_message(m, false));
    }

    #[test]
    fn credentials_are_redacted() {
        let m = "signature for AKIAIOSFODNN7EXAMPLE with wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY failed";
        assert_eq!(
            shown_message(m, false),
            "signature for [redacted] with [redacted] failed"
        );
        let token = format!(
            "token {}",
            "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ".repeat(5)
        );
        assert_eq!(shown_message(&token, false), "token [redacted]");
        // Ids and names of ordinary length stay.
        assert_eq!(shown_message("AKIDEXAMPLE ok", false), "AKIDEXAMPLE ok");
    }

    #[test]
    fn one_line_bounded_and_quoted_text_hidden_when_asked() {
        let m = format!("line one\nline\ttwo {}", "x".repeat(500));
        let shown = shown_message(&m, false);
        assert!(shown.starts_with("line one line two xxx"), "{shown}");
        assert_eq!(shown.chars().count(), SHOWN_MESSAGE_CHARS);
        assert_eq!(
            shown_message("unexpected token at \"alice@example.com\" (offset 3)", true),
            "unexpected token at [redacted] (offset 3)"
        );
        assert_eq!(
            shown_message("unclosed 'bob and more", true),
            "unclosed [redacted]"
        );
        let multibyte = "é".repeat(300);
        assert_eq!(shown_message(&multibyte, false).chars().count(), 200);
    }
}
