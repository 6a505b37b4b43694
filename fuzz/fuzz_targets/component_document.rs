//! The component document parser and validator (`kiln_toe::document::parse`) on arbitrary
//! bytes: it must answer for every input, an error being a non-empty list of problems with
//! messages. Seeded from the corpus of real documents (`tests/corpus/components`).
#![no_main]

use kiln_toe::document::{parse, Platform};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Documents reach the parser as text (the API's `data` member is a JSON string).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for platform in [Platform::Linux, Platform::Windows] {
        if let Err(e) = parse(text, platform) {
            assert!(!e.problems.is_empty(), "an error without problems");
            for p in &e.problems {
                assert!(!p.message.trim().is_empty(), "a problem without a message: {p:?}");
            }
        }
    }
});
