//! Tokens and bounded FIFO channels.
//!
//! A channel carries [`Token`]s: data elements and a final stop token. Every stream ends with
//! one `Stop`, so a unit never needs to know how many outermost elements it will see; that is
//! what lets a Partition branch (whose outer dim is known only at run time) simulate, and it
//! is the form the newer STeP's stop tokens take for ragged dims (a `Stop(level)` per dim
//! would slot in here).
//!
//! Time model (conservative, per-unit local clocks in the style of DAM): each entry carries
//! the cycle it arrives at the consumer; the channel remembers the cycles its recent entries
//! were popped. A producer may push entry `i` only once entry `i - depth` has been popped,
//! and not before the cycle it was popped. Whether that pop has *happened* is a question of
//! simulation order (the producer waits for the consumer's simulation to catch up); when it
//! happened is simulated time. So the result does not depend on the order units are run in,
//! and a FIFO that is full in simulation order is full on the hardware.

use std::collections::VecDeque;
use std::rc::Rc;

use stepforge_tensor::Tensor;

/// What an element carries.
#[derive(Debug, Clone)]
pub enum Val {
    /// Timing-only: shape known statically, no values.
    Shape,
    /// Timing-only routing decision: the set bits of a `Multihot` selector (≤ 64 branches).
    Mask(u64),
    /// Functional: one tensor per tuple field.
    Fields(Rc<Vec<Tensor>>),
}

#[derive(Debug, Clone)]
pub enum Token {
    Data(Val),
    /// End of the stream.
    Stop,
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// Cycle the entry reaches the consumer.
    pub at: u64,
    /// Cycle it was pushed (for occupancy).
    pub pushed: u64,
    pub tok: Token,
}

#[derive(Debug)]
pub(crate) struct Chan {
    /// Entries the FIFO holds.
    pub depth: usize,
    pub hop: u64,
    pub q: VecDeque<Entry>,
    /// Pop cycles of the most recent `hist` pops (monotone), pop `k` at `pops[k & ring]`: a
    /// power-of-two ring that grows as pops happen, up to the first power of two ≥ `hist`.
    pops: Vec<u64>,
    /// `pops.len() - 1` (the ring's index mask).
    ring: u64,
    hist: u64,
    pub pushes: u64,
    pub popped: u64,
    /// Data elements pushed (stop tokens excluded).
    pub elements: u64,
    pub max_occ: usize,
    /// Pops (by number) that happened at or before the push cycle of the entry last popped:
    /// the entries pushed in order have non-decreasing push cycles, so this only moves
    /// forward (occupancy in O(1) amortised, even over a load's long history).
    occ_k: u64,
    occ_at: u64,
    /// `(cycle, +1/-1)` occupancy changes, when tracing.
    pub occ: Option<Vec<(u64, i8)>>,
}

impl Chan {
    pub fn new(depth: usize, extra_hist: usize, hop: u64, trace: bool) -> Chan {
        let hist = depth.saturating_add(extra_hist).max(1);
        Chan {
            depth,
            hop,
            q: VecDeque::with_capacity(depth.min(1 << 16)),
            pops: Vec::new(),
            ring: u64::MAX,
            hist: hist as u64,
            pushes: 0,
            popped: 0,
            elements: 0,
            max_occ: 0,
            occ_k: 0,
            occ_at: 0,
            occ: trace.then(Vec::new),
        }
    }

    /// `None` when the FIFO is full in simulation order; else the earliest cycle the next
    /// push may happen (when the entry `depth` places back was popped).
    #[inline]
    pub fn space(&self) -> Option<u64> {
        if self.q.len() >= self.depth {
            return None;
        }
        Some(self.space_empty())
    }

    /// How many of the latest pops are remembered.
    #[inline]
    fn remembered(&self) -> u64 {
        self.popped.min(self.hist)
    }

    /// The cycle pop number `k` happened, if it is still remembered.
    #[inline]
    pub fn pop_time_of(&self, k: u64) -> Option<u64> {
        if k >= self.popped || self.popped - k > self.remembered() {
            return None;
        }
        self.pops.get((k & self.ring) as usize).copied()
    }

    /// Records pop number `self.popped` at cycle `t`, growing the ring when it must remember
    /// more pops than it holds.
    #[inline]
    fn record_pop(&mut self, t: u64) {
        let k = self.popped;
        if k >= self.pops.len() as u64 && self.hist > self.pops.len() as u64 {
            self.grow(k);
        }
        if let Some(p) = self.pops.get_mut((k & self.ring) as usize) {
            *p = t;
        }
        self.popped += 1;
    }

    /// Doubles the pop ring, keeping the remembered pops before pop number `k`.
    #[cold]
    fn grow(&mut self, k: u64) {
        let cap = (self.pops.len() * 2).max(4);
        let old = std::mem::replace(&mut self.pops, vec![0; cap]);
        let (old_mask, new_mask) = (self.ring, (cap - 1) as u64);
        for j in k - self.remembered()..k {
            self.pops[(j & new_mask) as usize] = old[(j & old_mask) as usize];
        }
        self.ring = new_mask;
    }

    #[inline]
    pub fn front(&self) -> Option<&Entry> {
        self.q.front()
    }

    #[inline(always)]
    pub fn push(&mut self, t: u64, tok: Token) {
        if matches!(tok, Token::Data(_)) {
            self.elements += 1;
        }
        self.q.push_back(Entry {
            at: t + self.hop,
            pushed: t,
            tok,
        });
        self.pushes += 1;
        if let Some(o) = &mut self.occ {
            o.push((t, 1));
        }
    }

    /// Pops the front entry at cycle `t`.
    #[inline(always)]
    pub fn pop(&mut self, t: u64) -> Option<Token> {
        let e = self.q.pop_front()?;
        self.popped_at(t, e.pushed);
        Some(e.tok)
    }

    /// Bookkeeping of one pop at cycle `t` of the entry pushed at `pushed`: the pop ring and
    /// the occupancy the entry saw.
    #[inline(always)]
    fn popped_at(&mut self, t: u64, pushed: u64) {
        self.record_pop(t);
        // Occupancy just after this entry was pushed: the entries pushed by then (this one
        // and earlier) not yet popped. Entries more than `depth` back were popped by then
        // (the push waited for it), so only the remembered pops can still count.
        let first = self.popped - self.remembered();
        let later = if pushed >= self.occ_at {
            self.occ_at = pushed;
            let mut k = self.occ_k.max(first);
            // Pops `first..popped` are all remembered: read the ring directly.
            while k < self.popped
                && self
                    .pops
                    .get((k & self.ring) as usize)
                    .is_some_and(|&q| q <= pushed)
            {
                k += 1;
            }
            self.occ_k = k;
            (self.popped - k) as usize
        } else {
            self.occupancy_out_of_order(first, pushed)
        };
        self.max_occ = self.max_occ.max(later);
        if let Some(o) = &mut self.occ {
            o.push((t, -1));
        }
    }

    /// Lockstep runs (a producer and its consumer fired element by element, each pop right
    /// after its push, so the FIFO stays empty): the earliest cycle the next push may happen.
    /// [`Chan::space`] is this whenever the FIFO has room.
    #[inline(always)]
    pub fn space_empty(&self) -> u64 {
        // With room, pop `pushes - depth` has happened and is among the last `depth ≤ hist`
        // pops, so the ring holds it.
        match self.pushes.checked_sub(self.depth as u64) {
            Some(k) => self
                .pops
                .get((k & self.ring) as usize)
                .copied()
                .unwrap_or(0),
            None => 0,
        }
    }

    /// Lockstep runs: one data element pushed at `pushed` and popped at `t` (the FIFO is
    /// empty before and after; not for traced channels). Counts, pop ring and occupancy end
    /// as [`Chan::push`] then [`Chan::pop`] leave them.
    #[inline(always)]
    pub fn pass_through(&mut self, pushed: u64, t: u64) {
        debug_assert!(self.q.is_empty() && self.occ.is_none());
        self.elements += 1;
        self.pushes += 1;
        self.popped_at(t, pushed);
    }

    /// Occupancy after a push out of time order (not produced by the engine today): binary
    /// search over the remembered pops.
    #[cold]
    fn occupancy_out_of_order(&self, first: u64, pushed: u64) -> usize {
        let (mut lo, mut hi) = (first, self.popped);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.pop_time_of(mid).is_some_and(|q| q <= pushed) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (self.popped - lo) as usize
    }
}

/// The timing-only routing assumption: selector element `j` of a `bits`-way Multihot sets
/// `hot` bits, round-robin (`j·hot`, `j·hot + 1`, … mod `bits`), so every branch gets the same
/// share of the chunks. Deterministic in `j`, so every copy of a selector agrees.
pub(crate) fn synth_mask(j: u64, bits: usize, hot: usize) -> u64 {
    let bits = bits.clamp(1, 64) as u64;
    let hot = (hot as u64).clamp(1, bits);
    let mut m = 0u64;
    for t in 0..hot {
        m |= 1u64 << ((j.wrapping_mul(hot) + t) % bits);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_waits_for_the_pop_depth_places_back() {
        let mut c = Chan::new(2, 0, 1, false);
        assert_eq!(c.space(), Some(0));
        c.push(0, Token::Data(Val::Shape));
        c.push(1, Token::Data(Val::Shape));
        assert_eq!(c.space(), None);
        assert!(c.pop(10).is_some());
        assert_eq!(c.space(), Some(10));
        c.push(10, Token::Data(Val::Shape));
        assert!(c.pop(11).is_some());
        assert!(c.pop(12).is_some());
        assert_eq!(c.max_occ, 2);
        assert_eq!(c.elements, 3);
    }

    #[test]
    fn masks_are_balanced() {
        let mut count = [0; 3];
        for j in 0..30 {
            let m = synth_mask(j, 3, 2);
            assert_eq!(m.count_ones(), 2);
            for (b, c) in count.iter_mut().enumerate() {
                *c += (m >> b) & 1;
            }
        }
        assert_eq!(count, [20, 20, 20]);
    }
}
