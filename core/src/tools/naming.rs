//! Names a model sees for a tool: `source__tool`, safe for every provider.
//!
//! Providers accept function names matching `^[a-zA-Z0-9_-]{1,64}$` (Gemini also wants
//! a letter or `_` first, which a source id guarantees). A name that already fits is
//! used as it is; one that does not (a character outside the set, or too long) is
//! cleaned, shortened and given a suffix hashed from the original names. The result
//! depends only on the source id and the tool name, so it is the same across restarts
//! and whatever order servers list their tools in.

use sha2::{Digest, Sha256};

/// Longest name every provider accepts.
pub const MAX_NAME_LEN: usize = 64;

/// Between the source id and the tool name. Source ids never contain it, so the
/// first occurrence splits an unaltered name unambiguously.
pub const SEPARATOR: &str = "__";

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The name a model calls `tool` of `source` by.
pub fn exposed_name(source: &str, tool: &str) -> String {
    let plain = format!("{source}{SEPARATOR}{tool}");
    if !tool.is_empty() && plain.len() <= MAX_NAME_LEN && plain.chars().all(is_safe) {
        return plain;
    }
    let digest = Sha256::digest(format!("{source}\0{tool}").as_bytes());
    let suffix = hex::encode(&digest[..4]);
    let cleaned: String = plain
        .chars()
        .map(|c| if is_safe(c) { c } else { '_' })
        .take(MAX_NAME_LEN - suffix.len() - 1)
        .collect();
    format!("{cleaned}_{suffix}")
}

/// Whether `id` can name a tool source: a letter first, then letters, digits, `-` or
/// `_`, no `__`, at most 32 characters (leaving room for the tool name).
pub fn valid_source_id(id: &str) -> bool {
    id.len() <= 32
        && id.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && id.chars().all(is_safe)
        && !id.contains(SEPARATOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider_safe(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name.chars().all(is_safe)
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    }

    #[test]
    fn safe_names_are_kept() {
        assert_eq!(exposed_name("everything", "echo"), "everything__echo");
        assert_eq!(exposed_name("py", "get-sum_2"), "py__get-sum_2");
    }

    #[test]
    fn unsafe_or_long_names_are_cleaned_stably_and_stay_distinct() {
        let a = exposed_name("files", "read.file");
        let b = exposed_name("files", "read file");
        let c = exposed_name("files", "read_file");
        assert!(provider_safe(&a) && provider_safe(&b), "{a} {b}");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, exposed_name("files", "read.file"), "stable");
        assert!(a.starts_with("files__read_file_"), "{a}");

        let long = "x".repeat(100);
        let l1 = exposed_name("srv", &long);
        let l2 = exposed_name("srv", &format!("{long}y"));
        assert!(provider_safe(&l1) && l1.len() == MAX_NAME_LEN, "{l1}");
        assert_ne!(l1, l2);

        let unicode = exposed_name("srv", "überprüfen");
        assert!(provider_safe(&unicode), "{unicode}");
        assert!(provider_safe(&exposed_name("srv", "")));
    }

    #[test]
    fn source_ids_are_checked() {
        for ok in ["everything", "py-http", "a_b", "x1"] {
            assert!(valid_source_id(ok), "{ok}");
        }
        for bad in ["", "1abc", "a__b", "has space", "dot.ted", &"a".repeat(33)] {
            assert!(!valid_source_id(bad), "{bad}");
        }
    }
}
