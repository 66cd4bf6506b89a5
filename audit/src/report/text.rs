//! Log text is untrusted: a tool chose its paths and intents. Before it is
//! shown, every character that could hide, reorder or disguise text
//! (controls, bidi overrides and isolates, zero-width and other invisible
//! characters, stacks of combining marks) is turned into a visible escape,
//! by the same rules as the reviewer page of the approval service. Then
//! the HTML renderer escapes markup and the Markdown renderer escapes
//! Markdown and HTML metacharacters ([`markdown`]).

use std::fmt::Write;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Combining marks kept on one base character; more are shown as escapes.
const MAX_MARKS: usize = 2;

/// A run of text to show: as it is, or a character shown as its escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Ordinary text.
    Text(&'a str),
    /// A hidden, control or formatting character, to be shown as
    /// [`escape_of`] says.
    Escape(char),
}

/// Whether `c` is shown as an escape wherever log text is shown: control
/// (C0, DEL, C1), format (bidi controls, zero-width characters, tags),
/// private use, unassigned, line and paragraph separators, spaces other
/// than U+0020, and letters that draw nothing.
fn hidden(c: char) -> bool {
    if c == ' ' {
        return false;
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::Surrogate
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    ) || matches!(c,
        '\u{034f}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{2800}'
        | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{ffa0}' | '\u{e0100}'..='\u{e01ef}')
}

fn is_mark(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::NonspacingMark | GeneralCategory::SpacingMark | GeneralCategory::EnclosingMark
    )
}

/// Splits `s` into plain runs and escaped characters.
pub fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut marks = 0;
    for (i, c) in s.char_indices() {
        let hide = if is_mark(c) {
            marks += 1;
            marks > MAX_MARKS
        } else {
            marks = 0;
            hidden(c)
        };
        if hide {
            if start < i {
                out.push(Piece::Text(&s[start..i]));
            }
            out.push(Piece::Escape(c));
            start = i + c.len_utf8();
        }
    }
    if start < s.len() {
        out.push(Piece::Text(&s[start..]));
    }
    out
}

/// How a hidden character is shown: `\xNN` for C0, DEL and C1 controls
/// (as the terminal prompt shows them), `\u{XXXX}` for the others.
pub fn escape_of(c: char) -> String {
    let cp = c as u32;
    if cp < 0x20 || (0x7f..=0x9f).contains(&cp) { format!("\\x{cp:02x}") } else { format!("\\u{{{cp:04x}}}") }
}

/// `s` with every hidden character replaced by its escape (for places
/// that cannot mark escapes, such as SVG labels and tooltips).
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for p in pieces(s) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Escape(c) => out.push_str(&escape_of(c)),
        }
    }
    out
}

/// Text cut for display: at most `max` characters, and how many were left
/// out (shown as "… N more characters").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clipped {
    /// The characters kept.
    pub text: String,
    /// Characters left out.
    pub cut: usize,
}

impl Clipped {
    /// The first `max` characters of `s`.
    pub fn new(s: &str, max: usize) -> Clipped {
        match s.char_indices().nth(max) {
            None => Clipped { text: s.to_owned(), cut: 0 },
            Some((at, _)) => Clipped { text: s[..at].to_owned(), cut: s[at..].chars().count() },
        }
    }
}

/// ASCII characters that mean something to CommonMark, GitHub Flavored
/// Markdown (tables `|`, strikethrough `~`, math `$`, mentions `@`) or to
/// the HTML a Markdown renderer passes through (`<`, `>`, `&`). Each is
/// written with a backslash, which every CommonMark renderer shows as the
/// character itself.
const MARKDOWN_SPECIAL: &[char] =
    &['\\', '`', '*', '_', '{', '}', '[', ']', '(', ')', '<', '>', '&', '|', '!', '~', '$', '@', '^', '#', '"', '\''];

/// Log text for a Markdown document: Markdown and HTML metacharacters
/// backslash-escaped, hidden characters as escapes in code spans (which
/// are literal). The result never starts a line (callers put it after a
/// label or in a table cell), holds no newline, and cannot open a link,
/// an image, an HTML tag, an entity or a table column.
pub fn markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for p in pieces(s) {
        match p {
            Piece::Text(t) => {
                for c in t.chars() {
                    if MARKDOWN_SPECIAL.contains(&c) {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
            Piece::Escape(c) => {
                let _ = write!(out, "`{}`", escape_of(c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_become_escapes() {
        assert_eq!(visible("a\u{1b}[2Jb"), "a\\x1b[2Jb");
        assert_eq!(visible("x\ny\tz\u{9b}"), "x\\x0ay\\x09z\\x9b");
        assert_eq!(visible("report\u{202e}fdp.exe"), "report\\u{202e}fdp.exe");
        assert_eq!(visible("a\u{200b}\u{2060}\u{feff}\u{2066}b"), "a\\u{200b}\\u{2060}\\u{feff}\\u{2066}b");
        assert_eq!(visible("nb\u{a0}sp\u{2028}\u{3164}"), "nb\\u{00a0}sp\\u{2028}\\u{3164}");
        assert_eq!(visible("z\u{301}\u{302}\u{303}"), "z\u{301}\u{302}\\u{0303}");
        assert_eq!(visible("café שלום 日本"), "café שלום 日本");
        assert_eq!(pieces("ab"), vec![Piece::Text("ab")]);
        assert_eq!(pieces("\u{202e}"), vec![Piece::Escape('\u{202e}')]);
    }

    #[test]
    fn markdown_metacharacters_are_escaped() {
        assert_eq!(markdown("[x](javascript:alert(1))"), "\\[x\\]\\(javascript:alert\\(1\\)\\)");
        assert_eq!(markdown("<script>a|b</script>"), "\\<script\\>a\\|b\\</script\\>");
        assert_eq!(markdown("&#x202e; `c` *e* _u_"), "\\&\\#x202e; \\`c\\` \\*e\\* \\_u\\_");
        assert_eq!(markdown("a\u{202e}b\nc"), "a`\\u{202e}`b`\\x0a`c");
        assert_eq!(markdown("src/main.rs"), "src/main.rs");
    }

    #[test]
    fn clipping_counts_what_was_left_out() {
        assert_eq!(Clipped::new("abc", 5), Clipped { text: "abc".into(), cut: 0 });
        assert_eq!(Clipped::new("äbcdé", 2), Clipped { text: "äb".into(), cut: 3 });
    }
}
