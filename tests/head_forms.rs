//! The head's linear layer and its data gradient in each form (`head::Form`: GPU lanes, CPU
//! rows, CPU rows with subgroup broadcasts) against the CPU reference, and the subgroup form
//! bit for bit against the plain rows.

use crate::common::{check, first_bit_difference, gpu, rand, read, up, zeros};
use crate::ops::tol_for;
use combicam_gpu::ops::gemm::GemmWeights;
use combicam_gpu::ops::head::{self, Chunk, Form, LinearArgs, LinearBackwardArgs};

/// The first position where `a` and `b` differ in any bit, as a message.
fn first_difference(a: &[f32], b: &[f32]) -> Option<String> {
    let i = first_bit_difference(a, b)?;
    Some(format!("[{i}]: {} against {}", a[i], b[i]))
}

#[test]
fn head_linear_forms_match_reference_and_each_other() {
    let g = gpu();
    // rows not a multiple of 8, over two gradient segments (256 + 45); K = 1,030: 258 texels,
    // not a multiple of the 8 K steps a subgroup loads at once, the last texel half past K
    let (n, k) = (301, 1030);
    let w = rand(n * k, 920, -1.0, 1.0);
    let f = rand(k, 921, 0.0, 1.0);
    let b = rand(n, 922, -0.5, 0.5);
    let gr = rand(n, 923, -1.0, 1.0);
    let wt = GemmWeights::upload(g, "test.fc", &w, n, k).unwrap();
    let chunk = Chunk {
        w: &wt,
        row0: 0,
        rows: n,
        k,
    };
    let (fb, bb, gb) = (up(&f), up(&b), up(&gr));
    let want_logits = head::cpu::linear(&w, &f, &b, n, k);
    let want_df = head::cpu::linear_backward(&w, &gr, n, k);
    let nsegs = n.div_ceil(head::SEG_ROWS);
    let mut forms = vec![Form::Lanes, Form::Rows];
    if g.subgroup8 {
        forms.push(Form::RowsSubgroup);
    } else {
        eprintln!("head: Form::RowsSubgroup not tested: this device has no subgroups of 8");
    }
    // one run in `form`, the weights read sampled or (`image`) as a storage texture
    let run = |form: Form, image: bool| {
        let (lb, partb, dfb) = (zeros(n), zeros(nsegs * k), zeros(k));
        let fwd = LinearArgs {
            chunk,
            n,
            f: &fb.buf,
            bias: &bb.buf,
            logits: &lb.buf,
        };
        let bwd = LinearBackwardArgs {
            chunk,
            seg0: 0,
            nsegs,
            n,
            g: &gb.buf,
            partial: &partb.buf,
        };
        let ds = [
            head::linear_form(g, "test.linear", &fwd, (form, image)),
            head::linear_backward_form(g, "test.linear.bwd", &bwd, (form, image)),
            head::sum_partials(g, "test.sum", k, nsegs, &partb.buf, &dfb.buf),
        ];
        g.run_now(&ds.iter().collect::<Vec<_>>()).unwrap();
        (read(&lb), read(&dfb))
    };
    let mut rows_out = None;
    for form in forms {
        let (logits, df) = run(form, false);
        if g.image_reads {
            // the same texels through storage-texture reads: the same bits
            let (il, id) = run(form, true);
            assert_eq!(
                first_difference(&il, &logits),
                None,
                "linear.{form:?}: image vs sampled"
            );
            assert_eq!(
                first_difference(&id, &df),
                None,
                "linear.bwd.{form:?}: image vs sampled"
            );
            eprintln!("head.{form:?}: storage-texture reads bit-identical to sampled");
        } else if form == Form::Lanes {
            eprintln!("head: storage-texture reads not tested: this device does not use them");
        }
        let tol = tol_for(&want_logits);
        check(
            &format!("linear.{form:?}"),
            &logits,
            &want_logits,
            &[n],
            tol,
        );
        let tol = tol_for(&want_df);
        check(&format!("linear.bwd.{form:?}"), &df, &want_df, &[k], tol);
        match form {
            Form::Rows => rows_out = Some((logits, df)),
            Form::RowsSubgroup => {
                let (rl, rd) = rows_out.as_ref().unwrap();
                assert_eq!(
                    first_difference(&logits, rl),
                    None,
                    "linear: subgroup vs rows"
                );
                assert_eq!(
                    first_difference(&df, rd),
                    None,
                    "linear.bwd: subgroup vs rows"
                );
                eprintln!("head.RowsSubgroup: logits and df bit-identical to Rows");
            }
            Form::Lanes => {}
        }
    }
}
