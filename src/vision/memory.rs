//! A memory budget for decoded images (`decode` keeps the one the process shares), and the allocator setting that
//! returns large frame buffers to the system. Every decode reserves the most memory it can need before it
//! allocates, and keeps the reservation until its image is dropped. Small frames decode side by side; large ones
//! wait their turn, and one that could never fit is refused, so a burst of decompression bombs cannot push the
//! server's memory past the budget.

use std::sync::{Condvar, Mutex};

/// Memory shared by all decodes, bytes.
#[derive(Debug)]
pub struct MemoryBudget {
    capacity: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl MemoryBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        Self { capacity, used: Mutex::new(0), freed: Condvar::new() }
    }

    /// The whole budget, bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        *self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves `bytes`, blocking until they are free; `None` if they exceed the whole budget.
    pub fn reserve(&self, bytes: u64) -> Option<Reservation<'_>> {
        if bytes > self.capacity {
            return None;
        }
        let mut used = self.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while *used + bytes > self.capacity {
            used = self.freed.wait(used).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *used += bytes;
        Some(Reservation { budget: self, bytes })
    }
}

/// Bytes held from a [`MemoryBudget`] until dropped.
#[derive(Debug)]
pub struct Reservation<'a> {
    budget: &'a MemoryBudget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.used.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *used -= self.bytes;
        self.budget.freed.notify_all();
    }
}

/// Makes the allocator give freed frame buffers back to the system at once. glibc's default raises its mmap
/// threshold after the first large free, so later frame-sized buffers are carved from per-thread arenas and
/// their memory stays with the process: eight large frames in a row grew the server by 100 MB that it kept. Call
/// once at start-up; elsewhere than glibc it does nothing.
pub fn return_large_buffers_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Buffers of 8 MiB or more (frames over 1080p, their working copies) are mapped from the system and
        // unmapped when freed; the models' tensors, smaller, stay in the arenas as glibc would keep them anyway.
        const MMAP_THRESHOLD_BYTES: i32 = 8 * 1024 * 1024;
        // Setting the mmap threshold pins glibc's trim threshold at its 128 KiB default: every frame then gave the
        // models' scratch back to the system and faulted it in again on the next (3 % of a frame's time in the
        // kernel under `perf`). Up to 16 MiB of free memory at the top of each arena is kept for the next frame.
        const TRIM_THRESHOLD_BYTES: i32 = 16 * 1024 * 1024;
        // SAFETY: mallopt only sets allocator parameters; these, below glibc's maxima, are valid.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn refuses_what_can_never_fit_and_frees_on_drop() {
        let budget = MemoryBudget::new(100);
        assert!(budget.reserve(101).is_none());
        let a = budget.reserve(60).unwrap();
        let b = budget.reserve(40).unwrap();
        assert_eq!(budget.in_use(), 100);
        drop(a);
        assert_eq!(budget.in_use(), 40);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_reservation_waits_until_enough_is_freed() {
        let budget = Arc::new(MemoryBudget::new(100));
        let held = budget.reserve(80).unwrap();
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || {
                let _reservation = budget.reserve(50).unwrap();
                budget.in_use()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "50 more bytes do not fit while 80 are held");
        drop(held);
        assert_eq!(waiter.join().unwrap(), 50);
        assert_eq!(budget.in_use(), 0);
    }
}
