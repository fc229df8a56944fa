//! Stop tokens: how a command, the service or a caller asks work in progress to stop. One token
//! per job (cancel, timeout) and one for the whole run (Ctrl-C, SIGTERM), passed in explicitly;
//! the first reason given wins.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Why work was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Ctrl-C, SIGTERM after the grace period, or the engine shutting down.
    Interrupted,
    /// Cancelled by a user (a control message, `DELETE /jobs/<id>`).
    Cancelled,
    /// Ran longer than its time limit.
    TimedOut,
}

impl StopReason {
    fn code(self) -> u8 {
        match self {
            StopReason::Interrupted => 1,
            StopReason::Cancelled => 2,
            StopReason::TimedOut => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(StopReason::Interrupted),
            2 => Some(StopReason::Cancelled),
            3 => Some(StopReason::TimedOut),
            _ => None,
        }
    }

    /// A short name (a dead-letter reason, a log field).
    pub fn label(self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Cancelled => "cancelled",
            StopReason::TimedOut => "timed-out",
        }
    }
}

/// A shared stop flag; cheap to clone, all clones see the same state.
#[derive(Debug, Clone, Default)]
pub struct StopToken(Arc<AtomicU8>);

impl StopToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks to stop for `why`, unless a reason was given before (the first one stays).
    pub fn stop(&self, why: StopReason) {
        let _ = self.0.compare_exchange(0, why.code(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        StopReason::from_code(self.0.load(Ordering::SeqCst))
    }

    pub fn is_stopped(&self) -> bool {
        self.reason().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_clones_share_it() {
        let t = StopToken::new();
        assert_eq!(t.reason(), None);
        let c = t.clone();
        c.stop(StopReason::TimedOut);
        t.stop(StopReason::Cancelled);
        assert_eq!(t.reason(), Some(StopReason::TimedOut));
        assert!(c.is_stopped());
    }
}
