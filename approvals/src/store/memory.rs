//! Requests kept in memory: for tests, lost on exit.

use super::{Record, Store, StoreError, VoteAdded, VoteRecord};
use crate::protocol::State;
use std::sync::{Mutex, MutexGuard};

/// A [`Store`] in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Vec<Record>>,
}

impl MemoryStore {
    fn lock(&self) -> Result<MutexGuard<'_, Vec<Record>>, StoreError> {
        self.records.lock().map_err(|_| StoreError::Backend("the in-memory store is poisoned".into()))
    }
}

impl Store for MemoryStore {
    fn insert(&self, record: &Record) -> Result<(), StoreError> {
        let mut records = self.lock()?;
        if records.iter().any(|r| r.id == record.id) {
            return Err(StoreError::Duplicate(record.id.clone()));
        }
        records.push(Record { votes: Vec::new(), ..record.clone() });
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.lock()?.iter().find(|r| r.id == id).cloned())
    }

    fn list(&self, state: Option<State>, limit: Option<usize>, offset: usize) -> Result<Vec<Record>, StoreError> {
        let records = self.lock()?;
        let mut out: Vec<(usize, &Record)> =
            records.iter().enumerate().filter(|(_, r)| state.is_none_or(|s| r.state == s)).collect();
        out.sort_by(|(i, a), (j, b)| b.created_ms.cmp(&a.created_ms).then(j.cmp(i)));
        Ok(out.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).map(|(_, r)| r.clone()).collect())
    }

    fn count(&self, state: Option<State>, runner: Option<&str>) -> Result<usize, StoreError> {
        Ok(self
            .lock()?
            .iter()
            .filter(|r| state.is_none_or(|s| r.state == s) && runner.is_none_or(|n| r.runner == n))
            .count())
    }

    fn add_vote(&self, id: &str, vote: &VoteRecord) -> Result<VoteAdded, StoreError> {
        let mut records = self.lock()?;
        let Some(r) = records.iter_mut().find(|r| r.id == id) else {
            return Ok(VoteAdded::NotFound);
        };
        if r.state != State::Pending || vote.at_ms >= r.expires_ms {
            return Ok(VoteAdded::NotPending);
        }
        if r.votes.iter().any(|v| v.by == vote.by) {
            return Ok(VoteAdded::AlreadyVoted);
        }
        r.votes.push(vote.clone());
        Ok(VoteAdded::Added)
    }

    fn set_state(&self, id: &str, to: State, at_ms: i64) -> Result<bool, StoreError> {
        let mut records = self.lock()?;
        match records.iter_mut().find(|r| r.id == id && r.state == State::Pending) {
            Some(r) => {
                r.state = to;
                r.decided_ms = Some(at_ms);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn due_expiries(&self, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let mut due: Vec<(String, i64)> = self
            .lock()?
            .iter()
            .filter(|r| r.state == State::Pending && r.expires_ms <= now_ms)
            .map(|r| (r.id.clone(), r.expires_ms))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        Ok(due)
    }
}
