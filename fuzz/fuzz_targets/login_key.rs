//! Login keys: no panic on any key; a key that verifies is exactly the one
//! the generator makes for its expiry, inside the validity window; and a
//! generated key verifies within its window.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::{login_key_generate, login_key_verify};

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(input.len());
    let (head, tail) = input.split_at(n);
    *input = tail;
    head
}

fn u64_of(input: &mut &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let head = take(input, 8);
    b[..head.len()].copy_from_slice(head);
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let mode = take(&mut input, 1).first().copied().unwrap_or(0);
    let api_len = usize::from(take(&mut input, 1).first().copied().unwrap_or(0) % 40);
    let api_key = take(&mut input, api_len).to_vec();
    let partner_id = u64_of(&mut input) % 1_000_000;
    let puid_len = usize::from(take(&mut input, 1).first().copied().unwrap_or(0) % 24);
    let puid = String::from_utf8_lossy(take(&mut input, puid_len)).into_owned();
    if mode % 2 == 0 {
        // A key from the input.
        let now = u64_of(&mut input) >> 1;
        let max_future = u64_of(&mut input) % (400 * 86_400);
        let Ok(key) = std::str::from_utf8(input) else {
            return;
        };
        if login_key_verify(key, &api_key, partner_id, &puid, now, max_future).is_ok() {
            let exp: u64 = key
                .split('$')
                .nth(2)
                .and_then(|e| e.parse().ok())
                .expect("exp");
            assert!(now < exp && exp <= now.saturating_add(max_future));
            assert_eq!(login_key_generate(&api_key, partner_id, &puid, exp), key);
        }
    } else {
        // A generated key verifies just before its expiry and not at it.
        let exp = u64_of(&mut input).max(1);
        let key = login_key_generate(&api_key, partner_id, &puid, exp);
        assert_eq!(
            login_key_verify(&key, &api_key, partner_id, &puid, exp - 1, 1),
            Ok(()),
            "generated key {key} does not verify"
        );
        assert!(login_key_verify(&key, &api_key, partner_id, &puid, exp, u64::MAX).is_err());
    }
});
