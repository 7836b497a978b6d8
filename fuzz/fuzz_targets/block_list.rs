#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scanwatch::fuzzing::block_list(data));
