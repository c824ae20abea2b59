//! The SOAP envelope reader on arbitrary bytes: it must answer (accept or refuse), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(env) = ims_wire::soap::parse_envelope(text, ims_wire::soap::Limits::default()) {
            let _ = env.operation();
            let _ = ims_wire::soap::action_matches("xtk:session#Logon", &env);
        }
    }
});
