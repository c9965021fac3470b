#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slipway::fuzzing::check_unpack(data));
