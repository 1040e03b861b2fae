#![no_main]
//! See `fuzz_checks::audit_export_line`: the property lives there, so CI replays the seeds on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::audit_export_line(data));
