//! Thread-per-core for the bench's own threads: which CPUs this process may
//! use (its affinity mask, as the broker reads it) and pinning one actor
//! thread to one of them.
//!
//! Owns: the pinning decision (`plan`) and the one `sched_setaffinity` call.
//!
//! Must never: fail a run because pinning failed (a container may forbid
//! it): the actor then runs unpinned and the run says so on stderr.

use crate::args::PinMode;

/// The CPUs this process may run on, in order.
pub fn allowed() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes into the set we own; zeroed is a
    // valid empty set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// The CPU of each actor (producers first, then consumers), or None to
/// leave them to the scheduler: `auto` pins only when every actor can have
/// a CPU of its own; `on` deals the CPUs out round-robin regardless.
pub fn plan(mode: PinMode, actors: usize, cpus: &[usize]) -> Option<Vec<usize>> {
    if cpus.is_empty() || actors == 0 {
        return None;
    }
    let pin = match mode {
        PinMode::Off => false,
        PinMode::On => true,
        PinMode::Auto => actors <= cpus.len(),
    };
    pin.then(|| (0..actors).map(|i| cpus[i % cpus.len()]).collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_current(cpu: usize) -> std::io::Result<()> {
    // SAFETY: the set is ours and `cpu` is below CPU_SETSIZE (it came from
    // `allowed`).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_when_every_actor_gets_its_own_cpu() {
        assert_eq!(plan(PinMode::Auto, 2, &[0, 1]), Some(vec![0, 1]));
        assert_eq!(plan(PinMode::Auto, 3, &[0, 1]), None);
        assert_eq!(plan(PinMode::On, 3, &[2, 5]), Some(vec![2, 5, 2]));
        assert_eq!(plan(PinMode::Off, 1, &[0, 1]), None);
        assert_eq!(plan(PinMode::Auto, 0, &[0]), None);
    }

    #[test]
    fn this_process_may_use_some_cpu() {
        assert!(!allowed().is_empty());
    }
}
