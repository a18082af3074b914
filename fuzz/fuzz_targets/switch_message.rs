#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sdn_controller::fuzzing::switch_message(data));
