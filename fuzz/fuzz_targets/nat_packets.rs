#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sdn_vswitch::fuzzing::nat_packets(data));
