//! The config loader: no panic on any TOML; a config that loads also
//! validates on its own, and loading is deterministic (the same text loads
//! to the same config).
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_server::fuzzing::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Keys given as file paths would make the target read the disk.
    if text.contains("public_keys") && !text.contains("-----BEGIN") && text.contains('/') {
        return;
    }
    if let Ok(config) = Config::from_toml_str(text) {
        config.validate().expect("a loaded config validates");
        let again = Config::from_toml_str(text).expect("loads again");
        assert_eq!(format!("{config:?}"), format!("{again:?}"));
    }
});
