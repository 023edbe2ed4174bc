//! Agent frames: no panic on any text; a frame that parses re-serialises
//! to text that parses to the same frame (compared by its serialisation);
//! an error's `id` is always a usable request id
//! (`presence_server::fuzzing::check_frame_round_trip`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{check_frame_round_trip, AgentInbound};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_frame_round_trip::<AgentInbound>(text);
    }
});
