#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| resttap_fuzz::paginator_body(data));
