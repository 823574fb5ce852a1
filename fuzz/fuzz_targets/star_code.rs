//! Fuzz target: `checks::star_code` (see fuzz/checks.rs for the property).
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::star_code(data));
