#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sdn_vpn::fuzzing::ike_message(data);
    sdn_vpn::fuzzing::ike_session(data);
});
