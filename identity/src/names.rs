//! Names of people (a run's user, reviewers, a token's subject, the names
//! in a multi-party rule) compared in one canonical form, so that another
//! spelling of one's own name (`Alice`, or `аlice` with a Cyrillic `а`)
//! is still one's own name.
//!
//! - [`check`] refuses a name that mixes scripts (UTS #39 mixed-script
//!   detection: `аlice` mixes Cyrillic and Latin) or holds an invisible
//!   character (a format or default-ignorable character such as U+200B):
//!   such a name has no honest use and is the usual disguise.
//! - [`canonical`] is the name's NFKC form, case folded, reduced to its
//!   UTS #39 confusable skeleton: names with the same canonical form are
//!   one person. `Alice`, `ALICE`, `ａｌｉｃｅ` (full width) and `аӏісе`
//!   (all Cyrillic) all give `alice`'s.

use unicode_normalization::UnicodeNormalization as _;
use unicode_security::MixedScript as _;

/// Why `name` cannot name a person, if it cannot: one line, lowercase,
/// naming the offending character.
pub fn check(name: &str) -> Result<(), String> {
    if let Some(c) = name.chars().find(|c| invisible(*c)) {
        return Err(format!("contains the invisible character U+{:04X}", u32::from(c)));
    }
    if !name.is_single_script() {
        return Err("mixes letters of different scripts (such as Latin and Cyrillic), which disguises a name".into());
    }
    Ok(())
}

/// The form in which two names of one person are equal: NFKC, case
/// folded, then the confusable skeleton (TR39), then NFKC again.
pub fn canonical(name: &str) -> String {
    skeleton(&fold(name))
}

/// The two canonical forms of a name: case folded before the skeleton
/// ([`canonical`]: `ALICE` is `alice`), and the skeleton taken before case
/// folding too (`aIice`, a capital I for the l, is `alice`: once folded, the
/// I would be an i). Two names are one person when either form agrees.
pub fn forms(name: &str) -> [String; 2] {
    [canonical(name), skeleton(&fold(&skeleton(name)))]
}

/// Whether `a` and `b` name the same person.
pub fn same(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (fa, fb) = (forms(a), forms(b));
    fa[0] == fb[0] || fa[1] == fb[1]
}

/// Whether the name with these [`forms`] is `other` in another spelling.
pub fn same_forms(forms_a: &[String; 2], other: &str) -> bool {
    let fb = forms(other);
    forms_a[0] == fb[0] || forms_a[1] == fb[1]
}

/// NFKC, then lower, upper, lower case: folds the full mappings (`ẞ` ->
/// `ß` -> `ss`) that a lowercase alone misses.
fn fold(name: &str) -> String {
    name.nfkc().collect::<String>().to_lowercase().to_uppercase().to_lowercase()
}

/// The UTS #39 skeleton, in NFKC.
fn skeleton(name: &str) -> String {
    let s: String = unicode_security::skeleton(&name.nfkc().collect::<String>()).collect();
    s.nfkc().collect()
}

/// Format characters, default-ignorable ones and variation selectors:
/// they change a name without changing how it looks.
fn invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_many_spellings() {
        for other in ["Alice", "ALICE", "ａｌｉｃｅ", "аӏісе", "aIice"] {
            assert!(same("alice", other), "{other}: {} vs {}", canonical("alice"), canonical(other));
        }
        assert!(same("strasse", "STRAẞE"));
        assert!(same("dr.rivera", "Dr.Rivera"));
        for other in ["bob", "alicia", "alice2", "al"] {
            assert!(!same("alice", other), "{other}");
        }
    }

    #[test]
    fn mixed_scripts_and_invisible_characters_are_refused() {
        for good in ["alice", "dr.rivera", "uid:1000", "ci-runner-1", "Ålesund", "аня", "山田", "山田たろう", "Ελένη"]
        {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        assert!(check("аlice").unwrap_err().contains("mixes"), "Cyrillic а with Latin");
        assert!(check("alicе").is_err(), "Latin with a Cyrillic е");
        assert!(check("ali\u{200b}ce").unwrap_err().contains("U+200B"));
        assert!(check("alice\u{fe0f}").is_err());
    }
}
