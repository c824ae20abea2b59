//! A whole `xtk:queryDef#ExecuteQuery` document as the router gets it: the envelope reader, the
//! `queryDef` reader and the SQL translation end to end. Never a panic, never unbounded work, and
//! whatever SQL comes out carries literals only as parameters and stays within the node bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = ims_wire::soap::Limits::default();
    // Either a queryDef on its own or one inside a SOAP body, as the router finds it.
    let root = match ims_wire::soap::parse_envelope(text, limits) {
        Ok(env) => env
            .method
            .elements()
            .flat_map(|param| param.elements())
            .find(|e| e.name == "queryDef")
            .cloned(),
        Err(_) => ims_wire::soap::parse_document(text, limits).ok(),
    };
    let Some(doc) = root else {
        return;
    };
    if let Ok(q) = ims_campaign::query::QueryDef::from_element(&doc) {
        if let Ok(Some(sql)) = q.where_sql() {
            assert!(!sql.text.contains('\''), "a literal reached the SQL text: {}", sql.text);
            // Each node writes at most one parameter and a bounded amount of text.
            assert!(sql.params.len() <= 2 * ims_campaign::query::MAX_NODES);
            let with_folders = ims_campaign::query::and_in(Some(sql), "folder_id", &[1, 2]);
            assert!(with_folders.text.contains("(folder_id IN ($"), "{}", with_folders.text);
        }
    }
});
