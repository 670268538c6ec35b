//! Splitting a markdown reply into messages that fit a surface's size limit.
//!
//! Cuts fall at line ends where possible, then at spaces, never inside a UTF-8
//! character. A cut inside a fenced code block closes the fence at the end of the part
//! and opens it again (same fence, same language) at the start of the next, so every
//! part renders as code. The split is greedy from the start, so while a reply grows,
//! a part that is full never changes again: a progressive renderer edits only the
//! last part and posts new ones.

/// The smallest limit the splitter accepts: room for a fence, its closing and text.
pub const MIN_PART_BYTES: usize = 64;

/// Splits `text` into parts of at most `max_bytes` bytes each (`max_bytes` is raised
/// to [`MIN_PART_BYTES`]). Without code fences cut open, the parts concatenate to
/// `text` exactly.
pub fn split_message(text: &str, max_bytes: usize) -> Vec<String> {
    let max = max_bytes.max(MIN_PART_BYTES);
    let mut parts = Vec::new();
    let mut current = String::new();
    // The fence open at the end of `current`, as (opening line, closing marker).
    let mut fence: Option<Fence> = None;
    // Whether `current` holds more than a reopened fence line.
    let mut has_content = false;

    for line in text.split_inclusive('\n') {
        let mut rest = line;
        loop {
            let after = fence_after(fence.as_ref(), rest);
            let closing = after.as_ref().map_or(0, Fence::closing_len);
            if current.len() + rest.len() + closing <= max {
                current.push_str(rest);
                has_content = true;
                fence = after;
                break;
            }
            if has_content {
                close_part(&mut parts, &mut current, fence.as_ref());
                has_content = false;
                continue;
            }
            // The line alone does not fit an empty part: cut it.
            let room = max - current.len() - fence.as_ref().map_or(0, Fence::closing_len);
            let cut = cut_point(rest, room);
            current.push_str(&rest[..cut]);
            rest = &rest[cut..];
            close_part(&mut parts, &mut current, fence.as_ref());
            has_content = false;
            if rest.is_empty() {
                break;
            }
        }
    }
    if has_content {
        parts.push(current);
    }
    if parts.is_empty() {
        parts.push(String::new());
    }
    parts
}

/// `text` with a code fence it leaves open closed, so that what is appended after it
/// (a status note) renders as text, not as code.
pub fn close_open_fence(text: &str) -> String {
    let mut fence: Option<Fence> = None;
    for line in text.split_inclusive('\n') {
        fence = fence_after(fence.as_ref(), line);
    }
    let mut closed = text.to_string();
    if let Some(f) = fence {
        if !closed.ends_with('\n') {
            closed.push('\n');
        }
        closed.push_str(&f.closing());
    }
    closed
}

/// An open fenced code block.
#[derive(Clone, Debug)]
struct Fence {
    /// The opening line as written (with its info string), ending in a newline.
    opening: String,
    marker: char,
    len: usize,
}

impl Fence {
    /// Bytes needed to close it at the end of a part: a newline (when the part does not
    /// end in one) and the marker.
    fn closing_len(&self) -> usize {
        1 + self.len + 1
    }

    fn closing(&self) -> String {
        self.marker.to_string().repeat(self.len)
    }
}

/// Ends the current part (closing an open fence) and starts the next one, reopening it.
fn close_part(parts: &mut Vec<String>, current: &mut String, fence: Option<&Fence>) {
    let mut part = std::mem::take(current);
    if let Some(f) = fence {
        if !part.ends_with('\n') {
            part.push('\n');
        }
        part.push_str(&f.closing());
        part.push('\n');
        current.push_str(&f.opening);
    }
    parts.push(part);
}

/// The fence state after `line`: opened, closed or unchanged.
fn fence_after(open: Option<&Fence>, line: &str) -> Option<Fence> {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    let indent = trimmed.len() - trimmed.trim_start_matches(' ').len();
    let body = &trimmed[indent..];
    let marker = body.chars().next();
    let run = |c: char| body.chars().take_while(|&x| x == c).count();
    match open {
        Some(f) => {
            let closes = indent <= 3
                && marker == Some(f.marker)
                && run(f.marker) >= f.len
                && body.trim_start_matches(f.marker).trim().is_empty();
            (!closes).then(|| f.clone())
        }
        None => match marker {
            Some(c @ ('`' | '~')) if indent <= 3 && run(c) >= 3 => {
                let len = run(c);
                // A backtick fence's info string may not contain backticks.
                if c == '`' && body[len..].contains('`') {
                    return None;
                }
                let mut opening = trimmed.to_string();
                opening.push('\n');
                Some(Fence {
                    opening,
                    marker: c,
                    len,
                })
            }
            _ => None,
        },
    }
}

/// Where to cut `text` so the head has at most `room` bytes: after the last space
/// that leaves the head at least half full, else at the last character boundary.
fn cut_point(text: &str, room: usize) -> usize {
    let mut end = room.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        // Not even one character fits (cannot happen with MIN_PART_BYTES); take one.
        return text.chars().next().map_or(0, char::len_utf8);
    }
    let mut cut = match text[..end].rfind(' ') {
        Some(space) if space + 1 >= end / 2 => space + 1,
        _ => end,
    };
    // The next part starts with what follows the cut: never with a fence marker the
    // text had in the middle of a line, which would open a code block there. Cutting
    // a character earlier (into the marker run, at worst) keeps it text. Only the
    // text up to `end` decides: what comes after it may not have been written yet,
    // and a cut must stay where it is as the reply grows.
    let first = text.chars().next().map_or(0, char::len_utf8);
    while cut > first && may_open_fence(&text[cut..end]) {
        cut = text[..cut]
            .char_indices()
            .next_back()
            .map_or(first, |(i, _)| i);
    }
    cut.max(first)
}

/// Whether a part starting with `ahead` (what follows a cut, up to the end of the
/// room) could start with a code fence marker, whatever follows `ahead`: a marker, or
/// the start of one that `ahead` ends in (even no character of it yet).
fn may_open_fence(ahead: &str) -> bool {
    let body = ahead.trim_start_matches(' ');
    ahead.len() - body.len() <= 3
        && ["```", "~~~"]
            .iter()
            .any(|marker| body.starts_with(marker) || marker.starts_with(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_limits(parts: &[String], max: usize) {
        for p in parts {
            assert!(p.len() <= max, "part of {} bytes > {max}: {p:?}", p.len());
        }
    }

    /// Each part has balanced fences (an even number of fence lines).
    fn check_fences(parts: &[String]) {
        for p in parts {
            let fences = p
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count();
            assert_eq!(fences % 2, 0, "unbalanced fences in {p:?}");
        }
    }

    #[test]
    fn an_open_fence_is_closed() {
        assert_eq!(
            close_open_fence("a\n```rust\nfn x()"),
            "a\n```rust\nfn x()\n```"
        );
        assert_eq!(close_open_fence("~~~~\nx\n"), "~~~~\nx\n~~~~");
        assert_eq!(close_open_fence("```\nx\n```\ndone"), "```\nx\n```\ndone");
        assert_eq!(close_open_fence("plain"), "plain");
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_message("hello", 100), vec!["hello".to_string()]);
        assert_eq!(split_message("", 100), vec![String::new()]);
    }

    #[test]
    fn plain_text_splits_at_lines_and_concatenates_back() {
        let text: String = (0..200).map(|i| format!("line number {i}\n")).collect();
        let parts = split_message(&text, 500);
        assert!(parts.len() > 5);
        check_limits(&parts, 500);
        assert_eq!(parts.concat(), text);
        for p in &parts[..parts.len() - 1] {
            assert!(p.ends_with('\n'), "cut inside a line: {p:?}");
        }
    }

    #[test]
    fn long_lines_are_cut_at_spaces_and_char_boundaries() {
        let words = "wörd ".repeat(400);
        let parts = split_message(&words, 100);
        check_limits(&parts, 100);
        assert_eq!(parts.concat(), words);
        let no_spaces = "é".repeat(500);
        let parts = split_message(&no_spaces, 101);
        check_limits(&parts, 101);
        assert_eq!(parts.concat(), no_spaces);
        let emoji = "🦀".repeat(100);
        let parts = split_message(&emoji, 65);
        check_limits(&parts, 65);
        assert_eq!(parts.concat(), emoji);
    }

    #[test]
    fn code_blocks_are_closed_and_reopened() {
        let code: String = (0..100).map(|i| format!("let x{i} = {i};\n")).collect();
        let text = format!("Here:\n```rust\n{code}```\nDone.\n");
        let parts = split_message(&text, 300);
        assert!(parts.len() > 3);
        check_limits(&parts, 300);
        check_fences(&parts);
        for p in &parts[1..parts.len() - 1] {
            assert!(p.starts_with("```rust\n"), "not reopened: {p:?}");
        }
        // Removing the added fences gives the text back.
        let mut joined = String::new();
        for (i, p) in parts.iter().enumerate() {
            let mut p = p.as_str();
            if i > 0 {
                p = p.strip_prefix("```rust\n").unwrap_or(p);
            }
            if i + 1 < parts.len() {
                p = p.strip_suffix("```\n").unwrap_or(p);
            }
            joined.push_str(p);
        }
        assert_eq!(joined, text);
    }

    #[test]
    fn tilde_fences_and_long_code_lines() {
        let text = format!("~~~\n{}\n~~~\n", "x".repeat(1000));
        let parts = split_message(&text, 200);
        check_limits(&parts, 200);
        for p in &parts {
            let fences = p.lines().filter(|l| l.starts_with("~~~")).count();
            assert_eq!(fences % 2, 0, "{p:?}");
        }
    }

    #[test]
    fn full_parts_do_not_change_as_the_text_grows() {
        let text: String = (0..300)
            .map(|i| {
                if i % 50 == 10 {
                    "```py\n".to_string()
                } else if i % 50 == 40 {
                    "```\n".to_string()
                } else {
                    format!("token {i} ")
                }
            })
            .collect();
        let full = split_message(&text, 200);
        let mut end = 0;
        while end < text.len() {
            end = (end + 7).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let parts = split_message(&text[..end], 200);
            // Every part but the last is final: it equals the same part of the end result.
            for (i, p) in parts.iter().enumerate().take(parts.len() - 1) {
                assert_eq!(p, &full[i], "part {i} changed at {end}");
            }
        }
    }
}
