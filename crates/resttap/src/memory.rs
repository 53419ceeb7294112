//! Process-wide memory settings, applied once at the start of `main`.
//!
//! A load streams hundreds of megabytes through short-lived buffers (response bodies, parsed
//! pages, Arrow batches) while DuckDB holds its own working set, so what the kernel and the
//! allocator keep *around* those buffers decides the peak RSS more than what is live at any
//! moment. Two settings, each measured on its own (docs/benchmarks.md):
//!
//! - Transparent huge pages off for this process. Where the system enables them for all
//!   memory (`/sys/kernel/mm/transparent_hugepage/enabled` = `always`), each touched 2 MiB
//!   region of the allocators' arenas is backed by a huge page, resident whether or not the
//!   rest of it is used.
//! - mimalloc returns freed memory to the OS 1 ms after the free, and no later, instead of
//!   10 ms after it and later still while frees continue. mimalloc also serves DuckDB's
//!   `malloc`s (the `override` feature of `libmimalloc-sys`), so this covers DuckDB's blocks.
//!   Its default kept ~30 MB of freed pages resident at this allocation rate. Returning them at
//!   once (the setting until 2026-11-27) cost the kernel ~78,000 page faults per 100,000-record
//!   load: DuckDB frees a 192 KiB dictionary table after compressing each string column of a
//!   row group and allocates the next one within the millisecond, on fresh pages each time.
//!   1 ms without extension keeps those for reuse: ~48,000 faults, ~10% less CPU, +3-4 MB peak.
//!   The extension (`purge_extend_delay`, 1 ms per further free in the same segment) is what
//!   let a busy segment keep its freed pages indefinitely.
//!
//! Both respect an explicit choice: `MIMALLOC_PURGE_DELAY` / `MIMALLOC_PURGE_EXTEND_DELAY` in
//! the environment win, and `RESTTAP_THP=1` leaves huge pages as the system has them.

/// mimalloc 2's `mi_option_purge_delay` (mimalloc.h; the `libmimalloc-sys` bindings have no
/// constant for it, and the number differs in mimalloc 3). The test below checks it is the
/// option whose default is 10 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc 2's `mi_option_purge_extend_delay` (default 1 ms), ten places after the delay.
const MI_OPTION_PURGE_EXTEND_DELAY: libmimalloc_sys::mi_option_t = 25;

/// Milliseconds from a free to the return of its pages to the OS (measured: docs/benchmarks.md).
const PURGE_DELAY_MS: std::ffi::c_long = 1;

pub fn tune() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("RESTTAP_THP").is_none_or(|v| v != "1") {
        // an older kernel without PR_SET_THP_DISABLE only means more resident memory
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    for (option, env, value) in [
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", PURGE_DELAY_MS),
        (MI_OPTION_PURGE_EXTEND_DELAY, "MIMALLOC_PURGE_EXTEND_DELAY", 0),
    ] {
        if std::env::var_os(env).is_none() {
            set(option, value);
        }
    }
}

fn set(option: libmimalloc_sys::mi_option_t, value: std::ffi::c_long) {
    // SAFETY: mi_option_set stores an integer option in mimalloc's option table; it takes no
    // pointers and may be called at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(option, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code)]
    fn get(option: libmimalloc_sys::mi_option_t) -> std::ffi::c_long {
        // SAFETY: as mi_option_set: reads an integer from mimalloc's option table.
        unsafe { libmimalloc_sys::mi_option_get(option) }
    }

    #[test]
    fn the_purge_options_are_the_ones_with_mimalloc_2s_defaults() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_PURGE_EXTEND_DELAY").is_some()
        {
            return; // the environment chose a value; the defaults cannot be observed
        }
        // each option and its neighbours in mimalloc 2's option list, with their defaults
        assert_eq!(get(MI_OPTION_PURGE_DELAY - 1), 1, "eager_commit_delay");
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 10, "purge_delay");
        assert_eq!(get(MI_OPTION_PURGE_DELAY + 1), 0, "use_numa_nodes");
        assert_eq!(get(MI_OPTION_PURGE_EXTEND_DELAY - 1), 10, "arena_purge_mult");
        assert_eq!(get(MI_OPTION_PURGE_EXTEND_DELAY), 1, "purge_extend_delay");
        assert_eq!(get(MI_OPTION_PURGE_EXTEND_DELAY + 3), 400, "retry_on_oom");
        set(MI_OPTION_PURGE_EXTEND_DELAY, 0);
        assert_eq!(get(MI_OPTION_PURGE_EXTEND_DELAY), 0);
        set(MI_OPTION_PURGE_EXTEND_DELAY, 1);
    }
}
