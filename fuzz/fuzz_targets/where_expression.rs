//! The `where` expression parser and SQL writer on arbitrary text: never a panic, and any SQL it
//! writes carries literals only as parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(expr) = ims_campaign::query::parse(text) {
            let schema = &ims_campaign::schemas::OPERATOR;
            if let Ok(sql) = ims_campaign::query::to_sql(&expr, &|a| schema.column(a), 1) {
                assert!(!sql.text.contains('\''), "a literal reached the SQL text: {}", sql.text);
            }
        }
    }
});
