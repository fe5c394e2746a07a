//! Fuzz target `image`: see `fuzz/entry.rs` and `fuzz/README.md`.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/main.rs"]
mod binary;
#[path = "../entry.rs"]
mod entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = entry::image(data);
});
