//! Writing generated files, or proving that the committed ones are current.

use std::path::Path;

use anyhow::{Context, Result};

/// What [`ensure_file_contents`] does when the file differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Replace the file.
    Write,
    /// Change nothing; report the difference.
    Check,
}

/// What [`ensure_file_contents`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file already had the expected contents.
    Fresh,
    /// The file was written (in [`Mode::Write`]).
    Written,
    /// The file differs (in [`Mode::Check`]); `diff` is a unified diff, committed -> expected.
    Stale {
        /// Unified diff from the file's contents to the expected ones.
        diff: String,
    },
}

/// Makes `path` hold `contents`, or reports how it differs.
///
/// Line endings are normalised before comparing, so a checkout with `core.autocrlf` does not
/// count as stale.
pub fn ensure_file_contents(path: &Path, contents: &str, mode: Mode) -> Result<Outcome> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text.replace("\r\n", "\n"),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if current == contents {
        return Ok(Outcome::Fresh);
    }
    match mode {
        Mode::Check => {
            let diff = similar::TextDiff::from_lines(current.as_str(), contents)
                .unified_diff()
                .context_radius(3)
                .header("committed", "generated from the spec")
                .to_string();
            Ok(Outcome::Stale { diff })
        }
        Mode::Write => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, contents)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(Outcome::Written)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_mode_reports_a_diff_and_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("xtask-freshness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file.rs");
        std::fs::write(&path, "old\n").unwrap();

        let outcome = ensure_file_contents(&path, "new\n", Mode::Check).unwrap();
        let Outcome::Stale { diff } = outcome else {
            panic!("expected a stale outcome, got {outcome:?}");
        };
        assert!(diff.contains("-old") && diff.contains("+new"), "{diff}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");

        assert_eq!(
            ensure_file_contents(&path, "new\n", Mode::Write).unwrap(),
            Outcome::Written
        );
        assert_eq!(
            ensure_file_contents(&path, "new\n", Mode::Check).unwrap(),
            Outcome::Fresh
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn crlf_checkouts_are_not_stale() {
        let dir = std::env::temp_dir().join(format!("xtask-crlf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file.rs");
        std::fs::write(&path, "a\r\nb\r\n").unwrap();
        assert_eq!(
            ensure_file_contents(&path, "a\nb\n", Mode::Check).unwrap(),
            Outcome::Fresh
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
