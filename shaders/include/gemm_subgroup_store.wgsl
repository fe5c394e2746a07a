// `regs`' store phase in its subgroup form (`ops::gemm::subgroup_source`, spliced where the
// device has subgroups of exactly 8 and a workgroup is one subgroup): y is bound as vec4
// chunks (y4), and the lanes hold a row's consecutive runs of 8 columns in subgroup order
// (`regs` takes its p0 from the subgroup index there), so each lane stores the two aligned
// chunks that start in its run, the second completed with the next lane's first values
// (subgroupShuffleDown): 2 vector stores a row where `store` makes 8 scalar ones (on lavapipe
// each store is per-lane work, whatever its width). What no whole chunk covers (a misaligned
// row's head in lane 0 and tail in lane 7, the row's end) is stored a float at a time, in a
// loop as long as the subgroup's longest such list (none for a row whose runs are aligned).
// The values, the row partial and its order of operations are `store`'s, bit for bit.

// Row m's 8 values from column p0 (m < M: the caller's loop bound), lane sg of the subgroup
fn store_sg(sg: u32, m: u32, p0: u32, c: Acc) {
    let b = row_bias(m);
    let lo = yo + m * prm.p + p0; // the run's first flat index
    var rv = Acc();
    if (has_res()) {
        rv = res8(lo);
    }
    let v0 = c[0] + vec4(b) + rv[0];
    let v1 = c[1] + vec4(b) + rv[1];
    let n0 = subgroupShuffleDown(v0, 1u);
    let re = lo - p0 + prm.p; // the row's end
    let own = min(lo + 8u, max(re, lo)) - lo; // the run's values within the row
    // chunk A = [c0, c0 + 4): the run's values s .. s + 3; B = [c0 + 4, c0 + 8): s + 4 .. 7
    // and, for s > 0, the next lane's first s
    let c0 = (lo + 3u) & ~3u;
    let s = c0 - lo;
    let a_ok = s + 4u <= own;
    let b_ok = c0 + 8u <= re && (s == 0u || sg < 7u);
    if (a_ok) {
        y4[c0 / 4u] = funnel(v0, v1, i32(s));
    }
    if (b_ok) {
        y4[c0 / 4u + 1u] = funnel(v1, n0, i32(s));
    }
    // one at a time: the head [0, s) unless the previous lane's B holds it, and the values
    // from t0 on that A and B do not
    let head = select(min(s, own), 0u, sg > 0u && c0 <= re);
    let t0 = select(select(own, s + 4u, !b_ok), s, !a_ok);
    let tail = own - min(t0, own);
    let n = subgroupMax(head + tail);
    for (var t = 0u; t < n; t++) {
        let j = select(t0 + t - head, t, t < head);
        if (t < head + tail) {
            y4[(lo + j) / 4u][(lo + j) % 4u] = select(v1[j % 4u], v0[j % 4u], j < 4u);
        }
    }
    // the row partial: `epilogue`'s terms over the run's values within the row, in order
    let pk = part_kind();
    var e0 = vec4(0.0);
    var e1 = vec4(0.0);
    if (pk == 2u) {
        e0 = v0;
        e1 = v1;
    }
    if (pk == 3u) {
        e0 = abs(v0);
        e1 = abs(v1);
    }
    if (dot_act()) {
        let zv = zd8(lo);
        e0 = v0 * act4(zv[0]);
        e1 = v1 * act4(zv[1]);
    }
    e0 = select(vec4(0.0), e0, vec4(0u, 1u, 2u, 3u) < vec4(own));
    e1 = select(vec4(0.0), e1, vec4(4u, 5u, 6u, 7u) < vec4(own));
    var part_v = part_add(0.0, e0.x);
    part_v = part_add(part_v, e0.y);
    part_v = part_add(part_v, e0.z);
    part_v = part_add(part_v, e0.w);
    part_v = part_add(part_v, e1.x);
    part_v = part_add(part_v, e1.y);
    part_v = part_add(part_v, e1.z);
    part_v = part_add(part_v, e1.w);
    put_regs_part(m, p0, part_v);
}
