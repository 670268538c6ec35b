//! Bounded capture of one output stream: the first `limit` bytes are kept, the rest is
//! only counted, so a program printing 100 MB costs `limit` bytes of memory.

/// One stream's captured head and its total size.
#[derive(Debug)]
pub struct BoundedOutput {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
}

impl BoundedOutput {
    pub fn new(limit: usize) -> Self {
        Self {
            kept: Vec::with_capacity(limit.min(8 * 1024)),
            limit,
            total: 0,
        }
    }

    /// Appends a chunk, keeping only what fits under the limit.
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }

    /// Bytes the stream carried in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the kept bytes hold `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.kept).contains(needle)
    }

    /// The kept text (invalid UTF-8 replaced), with a note when bytes were dropped.
    pub fn into_text(self) -> String {
        let truncated = self.truncated();
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if truncated {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[output truncated: {} bytes in total, the first {} shown]",
                self.total,
                self.kept.len()
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_counts_the_rest() {
        let mut out = BoundedOutput::new(10);
        out.push(b"hello ");
        out.push(b"world, and more");
        assert!(out.truncated());
        assert_eq!(out.total(), 21);
        let text = out.into_text();
        assert!(text.starts_with("hello worl\n"), "{text}");
        assert!(
            text.contains("21 bytes in total, the first 10 shown"),
            "{text}"
        );
    }

    #[test]
    fn short_output_is_untouched() {
        let mut out = BoundedOutput::new(100);
        out.push(b"42\n");
        assert!(!out.truncated());
        assert_eq!(out.into_text(), "42\n");
    }
}
