//! Running out of memory is a one-line error, not a crash: the binary under `prlimit --as`
//! (util-linux), with the software Vulkan driver, whose buffers are the process's memory. The
//! limits are far from the edges measured here (the device needs 384 MiB more than a process
//! has mapped after start-up, about 900 MiB of address space; a 224×4200 Lite0 plan 1252 MiB
//! more), so they hold on other machines too.

use crate::cli::{one_line_error, photo, run, tmp};

/// The binary under an address-space limit of `mib` MiB, run as `cli::bin` runs it.
fn limited(mib: u64) -> std::process::Command {
    let mut c = std::process::Command::new("prlimit");
    c.arg(format!("--as={}", mib << 20))
        .arg(env!("CARGO_BIN_EXE_combicam-gpu"))
        .env_remove("XDG_RUNTIME_DIR");
    c
}

#[test]
fn out_of_memory_is_a_one_line_error() {
    let d = tmp("oom");
    let img = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/photos/coffee.png");
    // too little for the driver to compile its kernels: refused when the device is made
    let out = d.join("out-device");
    let o = run(limited(900).arg("explain").arg(&img).arg("--out").arg(&out));
    let e = one_line_error(&o);
    assert!(!out.exists(), "{} was left behind", out.display());
    if !crate::common::gpu().host_memory() {
        // a GPU's driver takes the process's memory elsewhere (an H200's ran out allocating
        // its own state, exit 1): the one line, the exit and nothing written are what hold
        assert!(o.status.code().is_some_and(|c| c != 0), "{e}");
        assert!(e.contains("out of memory"), "{e}");
        println!(
            "the adapter's buffers are not this process's memory: the plan-size half of this \
             test holds on CPU adapters only"
        );
        return;
    }
    assert_eq!(o.status.code(), Some(2));
    assert!(
        e.contains("out of memory") && e.contains("raise the limit or free memory"),
        "{e}"
    );
    // enough for the device, not for a 224×4200 plan: that image fails, nothing is written
    let pano = d.join("pano.png");
    photo(&pano, 4200, 224);
    let out = d.join("out-plan");
    let o = run(limited(1600)
        .arg("explain")
        .arg(&pano)
        .arg("--out")
        .arg(&out));
    let e = one_line_error(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        e.contains("out of memory") && e.contains("for a 224×4200 input"),
        "{e}"
    );
    assert!(!out.exists(), "{} was left behind", out.display());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked") && !err.contains("memory allocation of"));
    let _ = std::fs::remove_dir_all(d);
}
