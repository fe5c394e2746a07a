//! Which of gemm.wgsl's kernels a GEMM runs, and the generated forms of its source.

use crate::gpu::Gpu;

/// Which of the shader's kernels runs (see shaders/gemm.wgsl).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variant {
    /// 32 × 8 outputs per invocation in registers, weights from the texture only: CPU adapters
    Regs,
    /// `Regs` where each lane of the subgroup of 8 fetches 4 of the 32 weight texels and
    /// broadcasts them to the others (`subgroup_source`): CPU adapters with subgroups of
    /// exactly 8 (`Gpu::subgroup8`), such as lavapipe on AVX2. Same results, bit for bit
    RegsSubgroup,
    /// 64 × 64 workgroup tiles through workgroup memory: GPUs
    Tiled,
    /// 32 × 32 workgroup tiles, K split over the workgroup's four groups: GPUs, K ≥ `SLIM_K`
    /// (`Variant::for_k`); row partials as `Tiled`'s
    Slim,
    /// `Slim` with eight groups, each an eighth of the K steps (`slim_wide_source`): GPUs whose
    /// device allows its 32 KiB of workgroup memory (`Gpu::slim_wide`), K ≥ `SLIM_WIDE_K`
    SlimWide,
}

impl Variant {
    /// How many column groups a row of P columns has, each one row partial (`Parts`): an
    /// invocation's 8 columns (`Regs`) or 4 (`Tiled`), over ⌈P/64⌉ workgroups.
    pub fn parts(self, p: usize) -> usize {
        p.div_ceil(64)
            * match self {
                Variant::Regs | Variant::RegsSubgroup => 8,
                Variant::Tiled | Variant::Slim | Variant::SlimWide => 16,
            }
    }

    /// The columns of one column group (`parts`).
    pub fn group_width(self) -> usize {
        match self {
            Variant::Regs | Variant::RegsSubgroup => 8,
            Variant::Tiled | Variant::Slim | Variant::SlimWide => 4,
        }
    }

    /// Whether the kernel reads T(x) from the packed scratch texture (`XPack`).
    pub fn packs(self) -> bool {
        matches!(self, Variant::Regs | Variant::RegsSubgroup)
    }

    /// The kernel for this adapter: on CPU (software) adapters `RegsSubgroup` where the device
    /// has subgroups of 8, else `Regs`; on GPUs `Tiled`.
    pub fn for_adapter(gpu: &Gpu) -> Variant {
        if gpu.cpu_subgroups() {
            Variant::RegsSubgroup
        } else if gpu.is_cpu() {
            Variant::Regs
        } else {
            Variant::Tiled
        }
    }

    /// The kernel for a GEMM over K on this adapter (only K decides): `for_adapter`'s on CPU
    /// adapters; on GPUs `SlimWide` from K = `SLIM_WIDE_K` on where the device allows it,
    /// `Slim` from K = `SLIM_K` on, else `Tiled`. The GPU kernels write the same row partials.
    pub fn for_k(gpu: &Gpu, k: usize) -> Variant {
        match Variant::for_adapter(gpu) {
            Variant::Tiled if k >= SLIM_WIDE_K && gpu.slim_wide => Variant::SlimWide,
            Variant::Tiled if k >= SLIM_K => Variant::Slim,
            v => v,
        }
    }
}

/// `Variant::for_k` picks `Slim` from this K on. On an H200 (2026-12-04, the kernel bench's
/// B4 shapes, the kernels' loop counters left out: `gpu::checks`), `slim` took 0.116 against
/// 0.237 ms on the projection 2688→448 at 10×15, 0.040 against 0.086 ms on the data gradient
/// 1792→448, and 0.017 against 0.027 ms on the projection 192→32 at 75×113 (133 `tiled`
/// workgroups); `tiled` kept the short K: 0.019 against 0.021 ms on the expansion 160→960 at
/// 19×29, 0.018 against 0.024 ms on the data gradient 32→192. (With the loop counters `slim`
/// had been the slower on every shape.)
pub const SLIM_K: usize = 192;

/// `Variant::for_k` picks `SlimWide` from this K on (six K steps of 16 a group and more). Not
/// yet chosen by a measurement: on the H100 (2026-12-06) `Slim`'s longest-K GEMMs, K = 1,632
/// and 2,688 over 150 positions, ran 45–70 workgroups on 132 cores, 1.5–3 TFLOP/s, and the
/// kernel bench (`benches/kernels.rs`) times all three GPU kernels on those shapes.
pub const SLIM_WIDE_K: usize = 768;

/// gemm.wgsl with `slim`'s K steps split over eight groups of 64 invocations instead of four
/// (`Variant::SlimWide`), each group's tiles in its own eighth of two 16 KiB arrays.
pub fn slim_wide_source() -> String {
    let template = crate::gpu::pipelines::shader_source("gemm");
    crate::gpu::pipelines::splice(
        &template,
        &[
            ("const SLIM_G = 4u;", "const SLIM_G = 8u;".into()),
            ("const TILE = 512u;", "const TILE = 1024u;".into()),
        ],
    )
}

/// The textures `regs` reads: the weights and the packed input.
pub const REGS_TEXTURES: [&str; 2] = ["a", "xt"];

/// `subgroup_source`'s fixed edits: the lane's subgroup index, the runs in its order (so lane
/// sg + 1 holds the next), y as vec4 chunks, `@store`: shaders/include/gemm_subgroup_store.wgsl
const SUBGROUP_FORM: [(&str, &str); 6] = [
    (
        "fn regs(",
        "fn regs(@builtin(subgroup_invocation_id) sg: u32, ",
    ),
    ("(wx * 8u + lid.x) * 8u", "(wx * 8u + sg) * 8u"),
    ("> y: array<f32>;", "> y4: array<vec4<f32>>;"),
    ("    y[o] = v;\n", "    y4[o / 4u][o % 4u] = v;\n"),
    ("store(m0 + r,", "store_sg(sg, m0 + r,"),
    ("//@regs store\n", "@store\n"),
];

/// gemm.wgsl with `regs` fetching its weights once per subgroup of 8 (`Variant::RegsSubgroup`):
/// the lane with subgroup index s fetches rows m0 + s, m0 + 8 + s, m0 + 16 + s and m0 + 24 + s,
/// and row r's texel is broadcast from lane r mod 8 of fetch r / 8. On lavapipe a texel fetch
/// is a gather over the 8 SIMD lanes even when every lane asks for the same texel, and a
/// broadcast is a lane extract, so the kernel makes 4 gathers a K step where it made 32. The
/// workgroup is 8 invocations, one whole subgroup, and every lane reaches the loop.
pub fn subgroup_source() -> String {
    let template = crate::gpu::pipelines::shader_source("gemm");
    let fetch: String = (0..4)
        .map(|j| format!("        let t{j} = wrow(m0 + {}u + sg, kq);\n", 8 * j))
        .collect();
    let store = crate::gpu::pipelines::include_text("gemm_subgroup_store");
    let mut parts = vec![("        //@regs weights\n", fetch)];
    parts.extend(SUBGROUP_FORM.map(|(a, b)| (a, b.replace("@store", store))));
    let rows: Vec<(String, String)> = (0..32)
        .map(|r| {
            (
                format!("wrow(m0 + {r}u, kq)"),
                format!("subgroupBroadcast(t{}, {}u)", r / 8, r % 8),
            )
        })
        .collect();
    parts.extend(rows.iter().map(|(a, b)| (a.as_str(), b.clone())));
    crate::gpu::pipelines::splice(&template, &parts)
}
