//! Action requests of the User Management API: any body is refused whole or planned entry by
//! entry, never a panic; an entry that fails leaves the snapshot as it was, one that succeeds
//! yields changes only when it changed something.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ims_identity::umapi::{parse_request, plan_entry, Snapshot};
use ims_identity::Now;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = parse_request(data) else {
        return;
    };
    let mut snap = Snapshot {
        org_id: "ORG@AdobeOrg".into(),
        ..Snapshot::default()
    };
    for entry in &entries {
        let before = snap.clone();
        match plan_entry(&mut snap, entry, Now::from_millis(1)) {
            Err(_) => assert_eq!(snap, before),
            Ok(changes) => assert!(!changes.is_empty() || snap == before),
        }
    }
});
