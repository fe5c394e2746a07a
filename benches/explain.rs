//! End-to-end benchmark: the steady-state explain of one image (forward, backward, all 32
//! Grad-CAMs, fusion, read-back) with the random-weight B4 visloc model at 300×450 and 380×380,
//! per phase and per kernel family, adapter named. The same as `combicam-gpu bench`.
//! Run: `cargo bench --bench explain`.

use combicam_gpu::app::bench::{self, BenchOptions};
use combicam_gpu::gpu::Gpu;
use combicam_gpu::model::plan::PlanOptions;
use combicam_gpu::model::weights::{self, Layout};

fn main() {
    let gpu = Gpu::new(None)
        .expect("needs a GPU adapter; without a GPU: apt-get install mesa-vulkan-drivers");
    let args = BenchOptions {
        sizes: vec![(300, 450), (380, 380)],
        repeat: 1,
        warmup: 1,
        iters: 5,
        json: None,
        // and 12 distinct sizes around 300×450 against 12 of it
        mixed: 12,
        // and the masked forward at the batch evaluate uses on this adapter
        masked: PlanOptions::AUTO_BATCH,
        // and the 10 slowest dispatches, each timed alone
        slowest: 10,
    };
    bench::run(
        std::sync::Arc::new(gpu),
        weights::formula(4, Layout::Visloc, 31145),
        &args,
    )
    .expect("end-to-end bench");
}
