#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scanwatch::fuzzing::replay_frames(data));
