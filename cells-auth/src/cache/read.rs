//! The cached read: a token for the caller with no lock, no precise clock and no shared write.
//!
//! A cached read must cost a few nanoseconds on any number of threads, so it may not take a
//! lock, read a precise clock (about 20 ns) or write a reference count that other cores also
//! write. The design:
//! - `published` is one atomic word: an *epoch* that changes whenever readers must look again
//!   (a new token, an invalidation, a failed refresh) and a *servable* bit. Only the slow path
//!   writes it, so readers on all cores share its cache line.
//! - Each thread keeps its own [`Slot`]: a copy of the current token, made once per token and
//!   thread, and the deadline at which that thread must next look again (the refresh point, or
//!   the end of the token's use) on the two coarse clocks of [`Clock::before`]. A read compares
//!   the epoch, reads the coarse clocks (a few nanoseconds, no shared write), and clones the
//!   copy, whose reference count no other thread touches.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use thread_local::ThreadLocal;

use crate::clock::{Clock, FastDeadline};
use crate::token::AccessToken;

/// Bit 0 of `published`: the token of the current epoch may be served.
const SERVABLE: u64 = 1;

#[derive(Default)]
pub(super) struct ReadPath {
    published: AtomicU64,
    per_thread: ThreadLocal<PaddedSlot>,
}

/// A thread's slot on cache lines of its own. `ThreadLocal` stores neighbouring threads'
/// entries side by side, and every read writes the `RefCell` borrow flag: unpadded, two reader
/// threads bounced one cache line between their cores and a two-thread read cost 7x a
/// one-thread read (`benches/cached_read.rs`). 128 bytes, because adjacent-line prefetchers pair
/// 64-byte lines.
#[repr(align(128))]
#[derive(Default)]
struct PaddedSlot(RefCell<Option<Slot>>);

/// One thread's view of the current token.
struct Slot {
    epoch: u64,
    token: AccessToken,
    /// From here on this thread takes the slow path again.
    look_again_at: FastDeadline,
}

impl ReadPath {
    /// This thread's copy of the current token, if it may still serve it.
    #[inline]
    pub(super) fn cached(&self, clock: &Clock) -> Option<AccessToken> {
        let published = self.published.load(Ordering::Acquire);
        if published & SERVABLE == 0 {
            return None;
        }
        let slot = self.per_thread.get()?.0.borrow();
        let slot = slot.as_ref()?;
        if slot.epoch != published >> 1 || !clock.before(&slot.look_again_at) {
            return None;
        }
        Some(slot.token.clone())
    }

    /// Makes every thread take the slow path once more: `epoch` is new, and says whether its
    /// token may be served.
    pub(super) fn publish(&self, epoch: u64, servable: bool) {
        let bit = if servable { SERVABLE } else { 0 };
        self.published.store((epoch << 1) | bit, Ordering::Release);
    }

    /// Puts `token` in this thread's slot, valid for `epoch` until `look_again_at`, and
    /// returns this thread's copy.
    pub(super) fn remember(
        &self,
        epoch: u64,
        token: &AccessToken,
        look_again_at: FastDeadline,
    ) -> AccessToken {
        let mut slot = self.per_thread.get_or(PaddedSlot::default).0.borrow_mut();
        let copy = match slot.as_ref() {
            Some(held) if held.token.generation() == token.generation() => held.token.clone(),
            _ => token.detached_copy(),
        };
        *slot = Some(Slot {
            epoch,
            token: copy.clone(),
            look_again_at,
        });
        copy
    }

    /// Whether the current epoch's token may be served, as readers see it.
    pub(super) fn servable(&self) -> bool {
        self.published.load(Ordering::Acquire) & SERVABLE != 0
    }
}
