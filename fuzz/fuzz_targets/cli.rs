//! Fuzz target `cli`: see `fuzz/entry.rs` and `fuzz/README.md`. Run it from a folder holding
//! the files its command lines may name (`fuzz/run.sh` makes one).
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../src/main.rs"]
mod binary;
#[path = "../entry.rs"]
mod entry;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = entry::cli(data);
});
