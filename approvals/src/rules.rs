//! Multi-party rules: who may vote on a request, whether a rule can ever be
//! met, and what the votes so far decide.
//!
//! - `any`: one approval.
//! - `all`: every named reviewer approved.
//! - `min N`: N distinct reviewers approved.
//! - `role R`: a reviewer holding R approved.
//!
//! Any one rejection rejects. A reviewer never votes on a request whose
//! `user` is their own name (reviewer names and user names share one
//! namespace). Names are compared in their canonical form
//! ([`sandbox_identity::names`]): `Alice` and `аlice` (Cyrillic `а`) are
//! `alice`, for the user, the reviewers and the names of an `all` list.

use crate::config::Directory;
use crate::protocol::{Require, State, Vote};
use sandbox_identity::names::same;

/// Why a rule can never be met, or why a reviewer may not vote. Each
/// message is one line, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// `all` names the task's own user.
    #[error("`all` names `{0}`, the task's own user, who may not approve it")]
    AllNamesUser(String),
    /// `all` names somebody who is not a reviewer.
    #[error("`all` names `{0}`, who is not a reviewer of this service")]
    UnknownReviewer(String),
    /// `min` is above the number of reviewers other than the user.
    #[error("`min = {wanted}` needs more reviewers than the {eligible} who may vote on this task")]
    NotEnoughReviewers {
        /// The rule's N.
        wanted: u32,
        /// Reviewers other than the task's user.
        eligible: usize,
    },
    /// Nobody but the user holds the role.
    #[error("no reviewer who may vote on this task holds the role `{0}`")]
    NoRoleHolder(String),
    /// `any` with nobody but the user.
    #[error("no reviewer other than the task's user `{0}` may vote")]
    NobodyEligible(String),
    /// The reviewer is the task's user.
    #[error("`{0}` is the task's user and may not vote on it")]
    OwnTask(String),
    /// The reviewer is not named in an `all` list.
    #[error("`{0}` is not named in the request's `all` list")]
    NotNamed(String),
    /// The reviewer lacks the role the rule asks for.
    #[error("`{reviewer}` does not hold the role `{role}` the request requires")]
    MissingRole {
        /// The reviewer.
        reviewer: String,
        /// The role the rule asks for.
        role: String,
    },
}

/// Checks that `require` can be met by the reviewers in `dir` for a task
/// run for `user`. Returns the reason when it never can.
pub fn feasible(require: &Require, user: &str, dir: &Directory) -> Result<(), RuleError> {
    let eligible = || dir.reviewers().iter().filter(|r| !r.is(user));
    match require {
        Require::Any(_) => {
            if eligible().next().is_none() {
                return Err(RuleError::NobodyEligible(user.to_owned()));
            }
        }
        Require::All(names) => {
            for n in names {
                if same(n, user) {
                    return Err(RuleError::AllNamesUser(n.clone()));
                }
                if dir.reviewer(n).is_none() {
                    return Err(RuleError::UnknownReviewer(n.clone()));
                }
            }
        }
        Require::Min(n) => {
            let count = eligible().count();
            if usize::try_from(*n).map_or(true, |n| n > count) {
                return Err(RuleError::NotEnoughReviewers { wanted: *n, eligible: count });
            }
        }
        Require::Role(role) => {
            if !eligible().any(|r| r.has_role(role)) {
                return Err(RuleError::NoRoleHolder(role.clone()));
            }
        }
    }
    Ok(())
}

/// Whether the reviewer `name` may vote on a request of `user` under
/// `require`.
pub fn may_vote(require: &Require, user: &str, name: &str, dir: &Directory) -> Result<(), RuleError> {
    if same(name, user) {
        return Err(RuleError::OwnTask(name.to_owned()));
    }
    match require {
        Require::Any(_) | Require::Min(_) => Ok(()),
        Require::All(names) => {
            if names.iter().any(|n| same(n, name)) {
                Ok(())
            } else {
                Err(RuleError::NotNamed(name.to_owned()))
            }
        }
        Require::Role(role) => {
            if dir.reviewer(name).is_some_and(|r| r.has_role(role)) {
                Ok(())
            } else {
                Err(RuleError::MissingRole { reviewer: name.to_owned(), role: role.clone() })
            }
        }
    }
}

/// What the votes `(reviewer, vote)` decide under `require` for a task of
/// `user`: `Rejected` on any rejection, `Approved` once the rule is met,
/// `Pending` otherwise. Votes by the user, or (for `role`) by reviewers
/// who do not hold the role now, never count as approvals.
pub fn evaluate(require: &Require, user: &str, votes: &[(&str, Vote)], dir: &Directory) -> State {
    if votes.iter().any(|(_, v)| *v == Vote::Reject) {
        return State::Rejected;
    }
    // One entry per person, however their name was spelled.
    let mut approvers: Vec<&str> = Vec::new();
    for (by, _) in votes {
        if !same(by, user) && !approvers.iter().any(|a| same(a, by)) {
            approvers.push(by);
        }
    }
    let met = match require {
        Require::Any(_) => !approvers.is_empty(),
        Require::All(names) => !names.is_empty() && names.iter().all(|n| approvers.iter().any(|a| same(a, n))),
        Require::Min(n) => usize::try_from(*n).is_ok_and(|n| n > 0 && approvers.len() >= n),
        Require::Role(role) => approvers.iter().any(|a| dir.reviewer(a).is_some_and(|r| r.has_role(role))),
    };
    if met { State::Approved } else { State::Pending }
}

/// Why a `require` is malformed (as opposed to unmeetable), if it is.
pub fn malformed(require: &Require) -> Option<&'static str> {
    match require {
        Require::Any(false) => Some("`require.any` must be true"),
        Require::All(names) if names.is_empty() => Some("`require.all` must name at least one reviewer"),
        Require::All(names) if names.iter().enumerate().any(|(i, n)| names[..i].iter().any(|m| same(m, n))) => {
            Some("`require.all` names a reviewer twice")
        }
        Require::Min(0) => Some("`require.min` must be at least 1"),
        Require::Role(r) if r.is_empty() => Some("`require.role` must not be empty"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Reviewer, Runner};

    fn dir() -> Directory {
        let h = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        Directory::new(
            vec![
                Reviewer::new("alice", &["sre"], &h('a')).unwrap(),
                Reviewer::new("bob", &[], &h('b')).unwrap(),
                Reviewer::new("carol", &["sre", "sec"], &h('c')).unwrap(),
            ],
            vec![Runner::new("ci", &h('d')).unwrap()],
        )
    }

    use Vote::{Approve as A, Reject as R};

    #[test]
    fn any() {
        let d = dir();
        let rq = Require::Any(true);
        assert_eq!(evaluate(&rq, "dave", &[], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("bob", A)], &d), State::Approved);
        assert_eq!(evaluate(&rq, "dave", &[("bob", R)], &d), State::Rejected);
        // The user's own approval never counts, in any spelling.
        assert_eq!(evaluate(&rq, "bob", &[("bob", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "Bob", &[("bob", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "bоb", &[("bob", A)], &d), State::Pending, "Cyrillic о");
    }

    #[test]
    fn all() {
        let d = dir();
        let rq = Require::All(vec!["alice".into(), "bob".into()]);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("carol", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("bob", A)], &d), State::Approved);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("bob", R)], &d), State::Rejected);
        assert_eq!(evaluate(&Require::All(vec![]), "dave", &[("alice", A)], &d), State::Pending);
    }

    #[test]
    fn min() {
        let d = dir();
        let rq = Require::Min(2);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("alice", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("bob", A)], &d), State::Approved);
        assert_eq!(evaluate(&rq, "alice", &[("alice", A), ("bob", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("alice", A), ("bob", A), ("carol", R)], &d), State::Rejected);
        assert_eq!(evaluate(&Require::Min(0), "dave", &[], &d), State::Pending);
    }

    #[test]
    fn role() {
        let d = dir();
        let rq = Require::Role("sre".into());
        assert_eq!(evaluate(&rq, "dave", &[("bob", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "dave", &[("carol", A)], &d), State::Approved);
        assert_eq!(evaluate(&rq, "dave", &[("nobody", A)], &d), State::Pending);
        assert_eq!(evaluate(&rq, "carol", &[("carol", A)], &d), State::Pending);
    }

    #[test]
    fn feasibility() {
        let d = dir();
        assert_eq!(feasible(&Require::Any(true), "dave", &d), Ok(()));
        assert_eq!(
            feasible(&Require::All(vec!["alice".into(), "dave".into()]), "dave", &d),
            Err(RuleError::AllNamesUser("dave".into()))
        );
        assert_eq!(
            feasible(&Require::All(vec!["alice".into(), "eve".into()]), "dave", &d),
            Err(RuleError::UnknownReviewer("eve".into()))
        );
        assert_eq!(feasible(&Require::Min(3), "dave", &d), Ok(()));
        assert_eq!(
            feasible(&Require::Min(3), "alice", &d),
            Err(RuleError::NotEnoughReviewers { wanted: 3, eligible: 2 })
        );
        assert!(feasible(&Require::Min(4), "dave", &d).is_err());
        assert_eq!(feasible(&Require::Role("sec".into()), "dave", &d), Ok(()));
        assert_eq!(feasible(&Require::Role("sec".into()), "carol", &d), Err(RuleError::NoRoleHolder("sec".into())));
        assert_eq!(feasible(&Require::Role("dba".into()), "dave", &d), Err(RuleError::NoRoleHolder("dba".into())));
        let lonely =
            Directory::new(vec![Reviewer::new("alice", &[], &format!("sha256:{}", "a".repeat(64))).unwrap()], vec![]);
        assert_eq!(feasible(&Require::Any(true), "alice", &lonely), Err(RuleError::NobodyEligible("alice".into())));
    }

    #[test]
    fn right_to_vote() {
        let d = dir();
        assert_eq!(may_vote(&Require::Any(true), "alice", "alice", &d), Err(RuleError::OwnTask("alice".into())));
        for spelling in ["Alice", "ALICE", "аlice", "ａｌｉｃｅ", "aIice"] {
            assert_eq!(
                may_vote(&Require::Any(true), spelling, "alice", &d),
                Err(RuleError::OwnTask("alice".into())),
                "{spelling}"
            );
            assert!(feasible(&Require::All(vec!["alice".into()]), spelling, &d).is_err(), "{spelling}");
        }
        assert_eq!(
            feasible(&Require::Min(3), "ALICE", &d),
            Err(RuleError::NotEnoughReviewers { wanted: 3, eligible: 2 })
        );
        assert_eq!(evaluate(&Require::All(vec!["Alice".into()]), "dave", &[("alice", A)], &d), State::Approved);
        assert_eq!(may_vote(&Require::Min(2), "dave", "alice", &d), Ok(()));
        let all = Require::All(vec!["alice".into()]);
        assert_eq!(may_vote(&all, "dave", "alice", &d), Ok(()));
        assert_eq!(may_vote(&all, "dave", "bob", &d), Err(RuleError::NotNamed("bob".into())));
        let role = Require::Role("sre".into());
        assert_eq!(may_vote(&role, "dave", "carol", &d), Ok(()));
        assert!(matches!(may_vote(&role, "dave", "bob", &d), Err(RuleError::MissingRole { .. })));
    }

    #[test]
    fn malformed_rules() {
        assert!(malformed(&Require::Any(false)).is_some());
        assert!(malformed(&Require::Any(true)).is_none());
        assert!(malformed(&Require::All(vec![])).is_some());
        assert!(malformed(&Require::All(vec!["a".into(), "a".into()])).is_some());
        assert!(malformed(&Require::All(vec!["alice".into(), "Alice".into()])).is_some());
        assert!(malformed(&Require::Min(0)).is_some());
        assert!(malformed(&Require::Role(String::new())).is_some());
        assert!(malformed(&Require::Min(1)).is_none());
    }
}
