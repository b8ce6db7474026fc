//! Text on its way to a terminal: control characters shown, never interpreted.

use std::borrow::Cow;

/// `text` with every character a terminal would act on written out instead: C0 controls and
/// DEL as `\x1b`, C1 controls as `\u{9b}`, bidirectional overrides as `\u{202e}`. Newlines and
/// tabs stay, and so does a carriage return right before a newline (CRLF line ends). So a
/// host's output cannot move the cursor, clear the screen, set the window title, ring the bell,
/// overwrite a line with `\r` or reorder what is shown.
pub fn visible(text: &str) -> Cow<'_, str> {
    let mut next = text.chars().skip(1).map(Some).chain([None]);
    if !text.chars().any(|c| needs_escape(c, next.next().flatten())) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if needs_escape(c, chars.peek().copied()) {
            if (c as u32) < 0x80 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char, next: Option<char>) -> bool {
    match c {
        '\n' | '\t' => false,
        '\r' => next != Some('\n'),
        c => c.is_control() || is_bidi_control(c), // C0, DEL, C1, bidi
    }
}

/// Characters that reorder how the text around them is displayed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_interpreted() {
        let hostile = "a\x1b]0;pwned\x07\x1b[2Jb\rover\x08\u{9b}31m\u{202e}txt.exe";
        let shown = visible(hostile);
        assert_eq!(
            shown,
            "a\\x1b]0;pwned\\x07\\x1b[2Jb\\x0dover\\x08\\u{9b}31m\\u{202e}txt.exe"
        );
        assert!(!shown.chars().any(|c| c.is_control()));
    }

    #[test]
    fn lines_tabs_and_crlf_stay() {
        let text = "one\ttwo\r\nthree\n";
        assert!(matches!(visible(text), Cow::Borrowed(_)));
        assert_eq!(visible("plain é ✓"), "plain é ✓");
        assert_eq!(visible("x\r"), "x\\x0d");
    }
}
