//! The Admin Console's CSV import: any text is parsed or refused with a line, never a panic;
//! every row parsed is one action entry for its email that the API's parser takes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rows) = ims_identity::import::parse_users_csv(text) {
        assert!(rows.len() <= ims_identity::import::MAX_ROWS);
        for row in rows {
            assert_eq!(row.entry["user"], row.email.as_str());
            let body = serde_json::Value::Array(vec![row.entry]).to_string();
            assert!(ims_identity::umapi::parse_request(body.as_bytes()).is_ok());
        }
    }
});
