//! Fragment reassembly against a model: the input is a size limit then a
//! list of (kind, length, bytes) items. The assembler must answer exactly
//! what the model says, never hold more than the limit, and hold nothing
//! after a whole message or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{Assembled, Bytes, Item, MessageAssembler};

#[derive(Debug, PartialEq)]
enum Want {
    Incomplete,
    Text(Vec<u8>),
    Binary,
    TooLarge,
    Invalid,
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else { return };
    let limit = usize::from(u16::from_le_bytes([*a, *b]) % 512);
    let mut assembler = MessageAssembler::new(limit);
    // The model: the open message, if any (is_text, bytes so far).
    let mut open: Option<(bool, Vec<u8>)> = None;
    let mut input = rest;
    while let [kind, len, tail @ ..] = input {
        let len = usize::from(*len).min(tail.len());
        let (bytes, tail) = tail.split_at(len);
        input = tail;
        let chunk = Bytes::copy_from_slice(bytes);
        let (item, first, is_text, last) = match kind % 4 {
            0 => (Item::FirstText(chunk), true, true, false),
            1 => (Item::FirstBinary(chunk), true, false, false),
            2 => (Item::Continue(chunk), false, false, false),
            _ => (Item::Last(chunk), false, false, true),
        };
        let want = if first && open.is_some() {
            open = None;
            Want::Invalid
        } else {
            if first {
                open = Some((is_text, Vec::new()));
            }
            match open.as_mut() {
                None => Want::Invalid,
                Some((_, buf)) if buf.len() + bytes.len() > limit => {
                    open = None;
                    Want::TooLarge
                }
                Some((text, buf)) => {
                    buf.extend_from_slice(bytes);
                    if !last {
                        Want::Incomplete
                    } else {
                        let text = *text;
                        let whole = open.take().map(|(_, b)| b).unwrap_or_default();
                        match (text, std::str::from_utf8(&whole).is_ok()) {
                            (true, true) => Want::Text(whole),
                            (true, false) => Want::Invalid,
                            (false, _) => Want::Binary,
                        }
                    }
                }
            }
        };
        let got = match assembler.push(item) {
            Assembled::Incomplete => Want::Incomplete,
            Assembled::Text(t) => Want::Text(t.into_bytes()),
            Assembled::Binary => Want::Binary,
            Assembled::TooLarge => Want::TooLarge,
            Assembled::Invalid(_) => Want::Invalid,
        };
        assert_eq!(got, want);
        assert!(assembler.buffered() <= limit, "holds more than the limit");
        let held = open.as_ref().map_or(0, |(_, b)| b.len());
        assert_eq!(
            assembler.buffered(),
            held,
            "holds other bytes than the model"
        );
    }
});
