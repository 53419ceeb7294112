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
//! - mimalloc returns freed memory to the OS at once instead of after 10 ms: at this
//!   allocation rate the delay kept ~13 MB of freed pages resident. mimalloc also serves
//!   DuckDB's `malloc`s (the `override` feature of `libmimalloc-sys`), so this covers DuckDB's
//!   blocks as well.
//!
//! Both respect an explicit choice: `MIMALLOC_PURGE_DELAY` in the environment wins, and
//! `RESTTAP_THP=1` leaves huge pages as the system has them.

/// mimalloc 2's `mi_option_purge_delay` (mimalloc.h; the `libmimalloc-sys` bindings have no
/// constant for it, and the number differs in mimalloc 3). The test below checks it is the
/// option whose default is 10 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

pub fn tune() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("RESTTAP_THP").is_none_or(|v| v != "1") {
        // an older kernel without PR_SET_THP_DISABLE only means more resident memory
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set_purge_delay(0);
    }
}

fn set_purge_delay(ms: std::ffi::c_long) {
    // SAFETY: mi_option_set stores an integer option in mimalloc's option table; it takes no
    // pointers and may be called at any time from any thread.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms)
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
    fn the_purge_delay_option_is_the_one_defaulting_to_10_ms() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment chose a value; the default cannot be observed
        }
        // neighbours in mimalloc 2's option list, with their documented defaults
        assert_eq!(get(MI_OPTION_PURGE_DELAY - 1), 1, "eager_commit_delay");
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 10, "purge_delay");
        set_purge_delay(0);
        assert_eq!(get(MI_OPTION_PURGE_DELAY), 0);
        set_purge_delay(10);
    }
}
