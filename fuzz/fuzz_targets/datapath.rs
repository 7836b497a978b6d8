#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scanwatch_tests::differential::fuzz(data));
