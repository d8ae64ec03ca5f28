//! Making server text safe to show: nothing token-like, no secrets, short.

/// The most characters of a body quoted in an error.
const EXCERPT_CHARS: usize = 160;

/// Runs this long of characters that may belong to a token (base64url, JWT dots, hex) are
/// replaced. Real words and HTML tags are shorter; JWTs and secrets are far longer.
const TOKEN_LIKE_RUN: usize = 20;

/// The start of a body as text, scrubbed: for error messages and logs.
pub(crate) fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    // Scrub all of it before cutting: a secret or token straddling the cut would otherwise
    // leave its first characters behind, too few to be caught. Bodies are capped at 64 KiB
    // (`cells_auth_gen::MAX_RESPONSE_BYTES`), so this stays cheap.
    let mut clean = scrub(&String::from_utf8_lossy(body), secrets);
    if let Some((index, _)) = clean.char_indices().nth(EXCERPT_CHARS) {
        clean.truncate(index);
        clean.push('…');
    }
    clean
}

/// Removes known secrets, token-like runs and control characters from server-provided text.
pub(crate) fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret, "<redacted>");
    }
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for ch in text.chars() {
        if ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.' | '+' | '/' | '=' | '~' | '%')
        {
            run.push(ch);
            continue;
        }
        flush_run(&mut out, &mut run);
        out.push(if ch.is_control() { ' ' } else { ch });
    }
    flush_run(&mut out, &mut run);
    out
}

fn flush_run(out: &mut String, run: &mut String) {
    if run.len() >= TOKEN_LIKE_RUN {
        out.push_str("<redacted>");
    } else {
        out.push_str(run);
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_secrets_are_removed() {
        let body = br#"{"access_token": "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl", "#;
        let clean = excerpt(body, &[]);
        assert!(!clean.contains("eyJ"), "{clean}");
        assert!(clean.contains("access_token"), "{clean}");

        let clean = scrub("bad secret hunter2 given", &["hunter2"]);
        assert_eq!(clean, "bad secret <redacted> given");
    }

    #[test]
    fn a_secret_across_the_cut_leaves_nothing_behind() {
        let secret = "0123456789abcdef0123456789abcdef";
        for padding in 0..400 {
            let body = format!("{} {secret} end", "x ".repeat(padding));
            let clean = excerpt(body.as_bytes(), &[secret]);
            assert!(!clean.contains("0123456789"), "{padding}: {clean}");
        }
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        let body = "<html>\n<body>".repeat(100);
        let clean = excerpt(body.as_bytes(), &[]);
        assert!(clean.chars().count() <= EXCERPT_CHARS + 1);
        assert!(!clean.contains('\n'));
    }
}
