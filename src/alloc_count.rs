//! Test builds only: a global allocator that counts, per thread, the bytes
//! allocated and the peak since a mark, so the decoder fuzz targets can
//! assert that hostile input never makes a decoder allocate beyond a bound.
//!
//! Must never: be compiled into the broker (it is `cfg(test)` in `lib.rs`),
//! or allocate itself (its counters are const-initialised thread locals
//! without destructors, so reaching them allocates nothing).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub(crate) struct Counting;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (frees of memory
    /// another thread allocated can take it below zero).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last `measure` began.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grow(n: usize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + n as isize;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

fn shrink(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get() - n as isize));
}

// SAFETY: every call goes straight to `System`; the counting around it
// touches only thread-local cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the new block arriving before the old one leaves:
            // for a moment both may be live.
            grow(new_size);
            shrink(layout.size());
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes this thread had
/// allocated at once while it ran, above what was live when it started.
pub(crate) fn peak_bytes<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get);
    (r, (peak - start).max(0) as usize)
}

/// The most a decode of `input_bytes` may allocate at its peak: a fixed
/// allowance for the decoder's small vectors (each array reserves at most
/// 64 KiB before its elements decode), plus a factor for structures larger
/// than their wire form. The worst found: a one-byte empty compact string
/// becomes a 32-byte `StrBytes`, then a 24-byte `String` in the native
/// request, with vectors doubling as they grow: 114 bytes per wire byte
/// (`kafka::fuzz::the_largest_structures_per_wire_byte_...`). That factor is why
/// requests other than Produce are capped far below the frame limit
/// (`kafka::codec::DEFAULT_MAX_CONTROL_REQUEST_BYTES`): a 4 MiB request allocates at most
/// ~0.5 GiB, for a moment, while it decodes.
pub(crate) fn decode_bound(input_bytes: usize) -> usize {
    128 * input_bytes + 256 * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_allocation_is_seen_and_a_small_one_is_not_mistaken_for_it() {
        let (_, big) = peak_bytes(|| vec![1u8; 1 << 20].len());
        assert!(big >= 1 << 20, "{big}");
        let (_, small) = peak_bytes(|| vec![1u8; 100].len());
        assert!(small < 4096, "{small}");
    }
}
