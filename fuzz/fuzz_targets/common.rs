//! Helpers shared by the token targets (included with `#[path]`).
#![allow(dead_code)]

/// The frozen "now" of the token targets.
pub const NOW: u64 = 1_767_225_600;

/// Applies byte edits from `edits` (position, operation, byte) to `token`.
pub fn tamper(token: &str, edits: &[u8]) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    for edit in edits.chunks_exact(3) {
        if bytes.is_empty() {
            bytes.push(edit[2]);
            continue;
        }
        let at = usize::from(edit[0]) * bytes.len() / 256;
        match edit[1] % 3 {
            0 => bytes[at] = edit[2],
            1 => bytes.insert(at, edit[2]),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

/// The JSON object of the input, if it is one.
pub fn object(data: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_slice(data) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}
