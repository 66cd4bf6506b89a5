//! Line diffs shown to reviewers, bounded in time.
//!
//! A line diff costs time that grows with the product of the two sides'
//! lengths when few lines are shared (two rewritten 512 KiB files of short
//! lines take hours), and the tool chooses both sides. So every diff runs
//! against a deadline: [`unified`] gives up when it passes, and the caller
//! shows sizes and SHA-256 hashes instead ("too large to show").

use std::time::{Duration, Instant};

/// What the diffs of one end-of-task review may take in all.
pub(crate) const REVIEW_TIME: Duration = Duration::from_secs(2);
/// What the diff of one approval preview (`fs.write` that asks) may take.
pub(crate) const PREVIEW_TIME: Duration = Duration::from_millis(500);

/// A unified diff of `old` and `new` (three lines of context, the two
/// labels in its header), or `None` when it was not done by `deadline`.
pub(crate) fn unified(old: &str, new: &str, old_label: &str, new_label: &str, deadline: Instant) -> Option<String> {
    if Instant::now() >= deadline {
        return None;
    }
    // Past the deadline the algorithm stops looking for a short diff and
    // returns a correct but long one at once; that one is not shown.
    let diff = similar::TextDiff::configure().deadline(deadline).diff_lines(old, new);
    if Instant::now() >= deadline {
        return None;
    }
    Some(diff.unified_diff().context_radius(3).header(old_label, new_label).to_string())
}

#[cfg(test)]
mod tests {
    use super::unified;
    use std::time::{Duration, Instant};

    #[test]
    fn a_diff_in_time_is_a_unified_diff() {
        let d = unified("a\nb\n", "a\nc\n", "old", "new", Instant::now() + Duration::from_secs(60)).unwrap();
        assert_eq!(d, "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n");
    }

    #[test]
    fn a_diff_past_its_deadline_is_not_shown() {
        let old = "a\n".repeat(200_000);
        let new = "b\n".repeat(200_000);
        // Without the deadline this diff takes minutes and is shown.
        assert_eq!(unified(&old, &new, "old", "new", Instant::now() + Duration::from_millis(100)), None);
    }
}
