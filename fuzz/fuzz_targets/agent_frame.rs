//! Agent frames: no panic on any text; a frame that parses re-serialises
//! to text that parses to the same frame (compared by its serialisation);
//! an error's `id` is always a usable request id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{parse_frame, AgentInbound};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_frame::<AgentInbound>(text) {
        Ok(frame) => {
            let once = serde_json::to_string(&frame).expect("a parsed frame serialises");
            let again = parse_frame::<AgentInbound>(&once)
                .unwrap_or_else(|e| panic!("re-serialised frame {once} does not parse: {e:?}"));
            let twice = serde_json::to_string(&again).expect("serialises");
            assert_eq!(once, twice, "round trip changed the frame");
        }
        Err(e) => {
            if let Some(id) = &e.id {
                assert!(
                    !id.is_empty() && id.len() <= 128,
                    "unusable error id {id:?}"
                );
            }
        }
    }
});
