//! The bytes the host holds on a tool's behalf, outside its linear memory:
//! request bodies being collected and sent, response bodies being read,
//! and responses held until the tool drops them.
//!
//! One [`HostMemory`] per run, with a limit of the larger of
//! `limits.memory` and `limits.output` (so one body of `limits.output`
//! always fits). Every such buffer takes a [`Charge`] first and gives it
//! back when it is dropped; a buffer that would take the run over the
//! limit is refused, and the request fails with `limit-exceeded`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A run's budget of host-held bytes, shared by every request.
#[derive(Debug, Clone)]
pub struct HostMemory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    used: AtomicU64,
}

impl HostMemory {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> HostMemory {
        HostMemory { inner: Arc::new(Inner { limit, used: AtomicU64::new(0) }) }
    }

    /// No limit (for hosts that bound nothing, such as unit tests).
    pub fn unlimited() -> HostMemory {
        HostMemory::new(u64::MAX)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// The bytes charged now.
    pub fn used(&self) -> u64 {
        self.inner.used.load(Ordering::Acquire)
    }

    /// An empty charge against this budget.
    pub fn charge(&self) -> Charge {
        Charge { memory: self.clone(), held: 0 }
    }
}

/// Bytes one buffer holds, counted against its run's [`HostMemory`] until
/// the charge is dropped.
#[derive(Debug)]
pub struct Charge {
    memory: HostMemory,
    held: u64,
}

impl Charge {
    /// Makes this charge `total` bytes. `false`, and nothing changed, when
    /// that would take the run past its limit.
    #[must_use]
    pub fn resize(&mut self, total: u64) -> bool {
        let inner = &self.memory.inner;
        if total <= self.held {
            inner.used.fetch_sub(self.held - total, Ordering::AcqRel);
            self.held = total;
            return true;
        }
        let more = total - self.held;
        let taken = inner
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&n| n <= inner.limit)
            })
            .is_ok();
        if taken {
            self.held = total;
        }
        taken
    }

    /// The limit of the budget this charge counts against.
    pub fn limit(&self) -> u64 {
        self.memory.limit()
    }

    /// The bytes this charge holds.
    pub fn held(&self) -> u64 {
        self.held
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.memory.inner.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::HostMemory;

    #[test]
    fn charges_are_refused_past_the_limit_and_given_back_when_dropped() {
        let m = HostMemory::new(100);
        let mut a = m.charge();
        assert!(a.resize(60));
        let mut b = m.charge();
        assert!(!b.resize(41), "60 + 41 is over 100");
        assert_eq!(b.held(), 0);
        assert!(b.resize(40));
        assert_eq!(m.used(), 100);
        assert!(a.resize(10));
        assert_eq!(m.used(), 50);
        drop(b);
        assert_eq!(m.used(), 10);
        drop(a);
        assert_eq!(m.used(), 0);
    }
}
