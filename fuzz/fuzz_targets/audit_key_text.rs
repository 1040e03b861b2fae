#![no_main]
//! See `fuzz_checks::audit_key_text`: the property lives there, so CI replays the seeds on stable.
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_checks::audit_key_text(data));
