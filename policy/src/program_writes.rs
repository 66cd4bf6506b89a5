//! What a host program may never change in the workspace, whatever its
//! rule allows.
//!
//! A program runs on a staged copy of the workspace (an overlay, see
//! `host-api/src/exec.rs`); when it has exited, its changes are applied
//! only if none of them touches a path decided here. The list is the
//! `fs` door's [`PROTECTED_WRITES`] (files that run code later: shell
//! start-up files, editor task files, direnv, husky) except that the git
//! directory is not protected as a whole: git itself must still write its
//! index, objects and refs. Inside `.git` the files that make git run a
//! command, or point it elsewhere, are protected ([`GIT_PROTECTED`]).
//! On top come the host's own files when they lie in the workspace (the
//! manifest, the audit log, checkpoints, keys, cursors: the `fs` door's
//! exact protected paths), each with everything beside it that its name
//! begins (`audit.jsonl.000001`, `audit.jsonl.pruned`,
//! `audit.jsonl.staging/…`) and everything below it.
//!
//! Paths are matched like `fs.deny`: case-insensitively on the Unicode
//! NFC form, so `.GIT/hooks` or a decomposed spelling is protected too.

use crate::fs::PROTECTED_WRITES;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use unicode_normalization::UnicodeNormalization;

/// The rule a refusal of the built-in list is recorded under.
pub const RULE: &str = "builtin:program-writes";

/// Paths inside git directories a program may never change: the hooks,
/// the configuration (which can name commands: pagers, editors, filters,
/// `core.fsmonitor`, `core.hooksPath`), `info/` (attributes naming
/// filters), and the files that redirect git to another directory. The
/// same for submodules' git directories under `.git/modules/` and the
/// per-worktree ones under `.git/worktrees/`. `**/.git` itself: a program
/// may not create, replace or remove a git directory (a `.git` file
/// pointing elsewhere, a new nested repository with its own config).
pub const GIT_PROTECTED: &[&str] = &[
    "**/.git",
    "**/.git/config",
    "**/.git/config.worktree",
    "**/.git/commondir",
    "**/.git/hooks/**",
    "**/.git/info/**",
    "**/.git/modules/**/config",
    "**/.git/modules/**/config.worktree",
    "**/.git/modules/**/commondir",
    "**/.git/modules/**/hooks/**",
    "**/.git/modules/**/info/**",
    "**/.git/worktrees/*/config.worktree",
    "**/.git/worktrees/*/commondir",
    "**/.git/worktrees/*/gitdir",
];

/// The paths programs may never change: the built-in globs and the host's
/// own files inside the workspace.
#[derive(Debug, Clone)]
pub struct ProgramWrites {
    globs: GlobSet,
    /// The glob each entry of `globs` came from (as written).
    sources: Vec<&'static str>,
    /// Workspace-relative paths and the rule that protects each.
    exact: Vec<(String, String)>,
}

impl ProgramWrites {
    /// The built-in list plus `exact`: workspace-relative paths (normal
    /// form) with the rule each is protected by (`builtin:manifest`).
    pub fn new(exact: Vec<(String, String)>) -> ProgramWrites {
        let mut builder = GlobSetBuilder::new();
        let mut sources = Vec::new();
        let listed = PROTECTED_WRITES.iter().filter(|g| **g != "**/.git/**").chain(GIT_PROTECTED);
        for glob in listed {
            // `d/**` also covers `d` itself (creating, replacing or
            // removing the directory).
            let mut forms = vec![*glob];
            if let Some(dir) = glob.strip_suffix("/**") {
                forms.push(dir);
            }
            for form in forms {
                builder.add(compile(form));
                sources.push(*glob);
            }
        }
        // The list is constant and tested; it always compiles.
        let globs = builder.build().unwrap_or_else(|e| panic!("built-in program protections do not compile: {e}"));
        ProgramWrites { globs, sources, exact }
    }

    /// Why a program may not change `path` (workspace-relative, `/`
    /// separated, no leading `/`): the rule and the protection that
    /// matched, or `None` when it may.
    pub fn refusal(&self, path: &str) -> Option<(String, String)> {
        for (p, rule) in &self.exact {
            let beside =
                path.strip_prefix(p.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '/']));
            if beside {
                return Some((rule.clone(), format!("`{p}` and what lies beside and below it")));
            }
        }
        let folded: String = path.nfc().collect::<String>().to_lowercase();
        self.globs.matches(&folded).first().map(|i| (RULE.to_owned(), format!("`{}`", self.sources[*i])))
    }
}

fn compile(glob: &str) -> Glob {
    GlobBuilder::new(glob)
        .literal_separator(true)
        .build()
        .unwrap_or_else(|e| panic!("built-in program protection `{glob}` does not compile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(w: &ProgramWrites, path: &str) -> bool {
        w.refusal(path).is_some()
    }

    #[test]
    fn git_may_write_its_index_objects_and_refs_but_not_hooks_or_config() {
        let w = ProgramWrites::new(Vec::new());
        for ok in [
            ".git/index",
            ".git/index.lock",
            ".git/objects/ab/cdef",
            ".git/refs/heads/main",
            ".git/HEAD",
            ".git/logs/HEAD",
            ".git/COMMIT_EDITMSG",
            "src/.git-keep",
            "src/git/config",
            "notes.txt",
            ".gitignore",
            ".git/refs/heads/hooks",
        ] {
            assert!(!refused(&w, ok), "{ok} refused");
        }
        for bad in [
            ".git",
            "sub/.git",
            ".git/hooks",
            ".git/hooks/pre-commit",
            ".git/config",
            ".git/config.worktree",
            ".git/commondir",
            ".git/info/attributes",
            "vendor/lib/.git/hooks/post-checkout",
            ".git/modules/lib/config",
            ".git/modules/a/b/hooks/pre-commit",
            ".git/worktrees/wt/gitdir",
            ".GIT/Hooks/x",
            ".gitmodules",
            ".husky",
            ".husky/pre-commit",
            ".envrc",
            ".vscode/tasks.json",
            ".idea/workspace.xml",
            ".bashrc",
            "home/.zshrc",
            ".profile",
            ".config/fish/config.fish",
        ] {
            assert!(refused(&w, bad), "{bad} allowed");
        }
        assert_eq!(w.refusal(".git/hooks/x").map(|r| r.0), Some(RULE.to_owned()));
    }

    #[test]
    fn the_hosts_own_files_are_protected_with_everything_beside_and_below() {
        let w = ProgramWrites::new(vec![
            ("logs/audit.jsonl".into(), "builtin:audit-log".into()),
            ("sandbox.toml".into(), "builtin:manifest".into()),
        ]);
        for bad in [
            "logs/audit.jsonl",
            "logs/audit.jsonl.000000000001",
            "logs/audit.jsonl.pruned",
            "logs/audit.jsonl.checkpoints",
            "logs/audit.jsonl.staging",
            "logs/audit.jsonl.staging/task/plan",
            "sandbox.toml",
        ] {
            assert!(refused(&w, bad), "{bad} allowed");
        }
        assert_eq!(w.refusal("sandbox.toml").map(|r| r.0), Some("builtin:manifest".to_owned()));
        for ok in ["logs/audit.jsonl-notes", "logs/other.jsonl", "sandbox.tomlx", "x/sandbox.toml"] {
            assert!(!refused(&w, ok), "{ok} refused");
        }
    }
}
