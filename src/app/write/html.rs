//! `explain --report`: one HTML page per photo with the paper's per-block figures (Figure 3:
//! every block's own map over the photo, by stage; Figure 4: max |activation| per block, with
//! each block's share of the fused sum), the fused overlays, the prediction and the run's
//! facts; and `<out>/index.html` linking every report. Pages open from disk with no network:
//! images are files beside them (relative links), plots inline SVG (plotters), no script.

use super::format::{Format, Item};
use super::png::png_names;
use crate::app::eval::{ImageMetrics, metrics_of};
use crate::app::record::{ExplainOptions, Report, used_blocks};
use crate::app::render::{fit, heatmap_rgb, jet, overlay, write_bytes_atomic, write_png_atomic};
use crate::cam::methods::{Explainer, Fusion, Method};
use crate::error::{Error, Result};
use crate::model::config::ModelCfg;
use crate::model::plan::Output;
use crate::ops::resample::upsample;
use image::RgbImage;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Longest side of the per-block overlays in the gallery.
const THUMB: u32 = 240;

/// Escape text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Figure 4: max |A_l| per block (bars), and each block's share of the fused sum (line, right
/// axis), as an SVG string.
pub fn block_plot(act_maxabs: &[f32], share: &[f64]) -> Result<String> {
    let n = act_maxabs.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        let plot_err =
            |e: &dyn std::fmt::Display| Error::Input(format!("cannot draw the plot: {e}"));
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let top = act_maxabs.iter().fold(0f32, |m, &v| m.max(v)).max(1e-12) as f64 * 1.1;
        let top_share = share.iter().fold(0f64, |m, &v| m.max(v)).max(1e-12) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .right_y_label_area_size(56)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..top)
            .map_err(|e| plot_err(&e))?
            .set_secondary_coord(-0.5f64..(n as f64 - 0.5), 0f64..top_share * 100.0);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("block")
            .y_desc("max |activation|")
            .x_labels(n.min(32))
            .x_label_formatter(&|v| format!("{}", v.round() as i64))
            .draw()
            .map_err(|e| plot_err(&e))?;
        chart
            .configure_secondary_axes()
            .y_desc("share of the fused sum (%)")
            .draw()
            .map_err(|e| plot_err(&e))?;
        chart
            .draw_series(act_maxabs.iter().enumerate().map(|(l, &v)| {
                let x = l as f64;
                Rectangle::new(
                    [(x - 0.35, 0.0), (x + 0.35, v as f64)],
                    RGBColor(70, 110, 190).filled(),
                )
            }))
            .map_err(|e| plot_err(&e))?
            .label("max |activation|")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 12, y + 5)],
                    RGBColor(70, 110, 190).filled(),
                )
            });
        chart
            .draw_secondary_series(LineSeries::new(
                share
                    .iter()
                    .enumerate()
                    .map(|(l, &s)| (l as f64, 100.0 * s)),
                RGBColor(220, 80, 40).stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?
            .label("share of the fused sum")
            .legend(|(x, y)| {
                PathElement::new([(x, y), (x + 12, y)], RGBColor(220, 80, 40).stroke_width(2))
            });
        legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
        root.present().map_err(|e| plot_err(&e))?;
    }
    Ok(svg)
}

/// The legend box both plots draw.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| Error::Input(format!("cannot draw the plot: {e}")))
}

/// Figure 4's numbers: per block its stage, resolution, max |A|, each method's map peak and
/// the first method's share of the fused sum.
fn block_table(html: &mut String, out: &Output, cfg: &ModelCfg, share: &[f64]) {
    let _ = write!(
        html,
        "<details><summary>the numbers</summary><table class=\"num\"><tr><th>block</th><th>stage</th><th>size</th><th>max |activation|</th>"
    );
    for e in &out.explainers {
        let _ = write!(html, "<th>{} peak</th>", esc(e.explainer.method.name()));
    }
    let _ = writeln!(html, "<th>share of the fused sum</th></tr>");
    for (l, b) in cfg.blocks.iter().enumerate() {
        let (mh, mw) = out.map_sizes[l];
        let _ = write!(
            html,
            "<tr><td>{l}</td><td>{}</td><td>{mh}×{mw}</td><td>{:.4}</td>",
            b.stage, out.act_maxabs[l]
        );
        for e in &out.explainers {
            match e.maps[l].as_ref() {
                Some(m) => {
                    let peak = m.iter().fold(0f32, |a, &v| a.max(v));
                    let _ = write!(html, "<td>{peak:.3e}</td>");
                }
                None => html.push_str("<td>–</td>"),
            }
        }
        let _ = writeln!(html, "<td>{:.1}%</td></tr>", 100.0 * share[l]);
    }
    let _ = writeln!(html, "</table></details>");
}

/// `evaluate`'s metrics for this image: a table and the deletion and insertion curves.
fn metrics_section(html: &mut String, m: &ImageMetrics, target: usize) -> Result<()> {
    let _ = writeln!(
        html,
        "<section><h2>Faithfulness (evaluate)</h2><p>Deletion: lower is better; insertion: \
higher is better; Average Drop: lower is better; ROAD (when measured): MoRF lower, LeRF \
and combined higher is better ({} steps).</p>",
        m.explainers
            .values()
            .next()
            .map_or(0, |e| e.deletion.len().saturating_sub(1))
    );
    if m.target != target {
        let _ = writeln!(
            html,
            "<p class=\"warn\">These metrics are for output {}, this page explains {target}.</p>",
            m.target
        );
    }
    let road = m.explainers.values().any(|e| e.road.is_some());
    let _ = writeln!(
        html,
        "<table><tr><th>explainer</th><th>deletion AUC</th><th>insertion AUC</th><th>Average Drop</th><th>Increase</th>{}</tr>",
        if road {
            "<th>ROAD MoRF</th><th>ROAD LeRF</th><th>ROAD combined</th>"
        } else {
            ""
        }
    );
    for (name, e) in &m.explainers {
        let cells = match (&e.road, road) {
            (Some(r), _) => format!(
                "<td>{:.4}</td><td>{:.4}</td><td>{:.4}</td>",
                r.morf_mean, r.lerf_mean, r.combined
            ),
            (None, true) => "<td>—</td><td>—</td><td>—</td>".into(),
            (None, false) => String::new(),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.2}%</td><td>{}</td>{cells}</tr>",
            esc(name),
            e.deletion_auc,
            e.insertion_auc,
            e.average_drop,
            if e.increase { "yes" } else { "no" }
        );
    }
    let svg = curves_plot(m)?;
    let _ = writeln!(
        html,
        "</table><div class=\"plot\" role=\"img\" aria-label=\"deletion and insertion curves: the target's probability against the share of pixels deleted or inserted, one line per explainer\">{svg}</div></section>"
    );
    Ok(())
}

/// The deletion and insertion curves side by side, one line per explainer.
pub fn curves_plot(m: &ImageMetrics) -> Result<String> {
    let mut svg = String::new();
    {
        let plot_err =
            |e: &dyn std::fmt::Display| Error::Input(format!("cannot draw the plot: {e}"));
        let root = SVGBackend::with_string(&mut svg, (760, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(&e))?;
        let halves = root.split_evenly((1, 2));
        let top = m
            .explainers
            .values()
            .flat_map(|e| e.deletion.iter().chain(&e.insertion))
            .fold(0f32, |a, &v| a.max(v))
            .max(1e-12) as f64
            * 1.05;
        // the legend where the curves are not: deletion falls, insertion rises
        type Pick = fn(&crate::app::eval::Metrics) -> &Vec<f32>;
        let panels: [(&str, Pick, SeriesLabelPosition); 2] = [
            ("deletion", |e| &e.deletion, SeriesLabelPosition::UpperRight),
            (
                "insertion",
                |e| &e.insertion,
                SeriesLabelPosition::LowerRight,
            ),
        ];
        for (area, (title, pick, at)) in halves.iter().zip(panels) {
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(32)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..1f64, 0f64..top)
                .map_err(|e| plot_err(&e))?;
            chart
                .configure_mesh()
                .x_desc(format!(
                    "share of pixels {}",
                    if title == "deletion" {
                        "deleted"
                    } else {
                        "inserted"
                    }
                ))
                .y_desc("probability")
                .draw()
                .map_err(|e| plot_err(&e))?;
            for (i, (name, e)) in m.explainers.iter().enumerate() {
                let c = pick(e);
                let n = (c.len().max(2) - 1) as f64;
                let colour = Palette99::pick(i).stroke_width(2);
                chart
                    .draw_series(LineSeries::new(
                        c.iter().enumerate().map(|(k, &v)| (k as f64 / n, v as f64)),
                        colour,
                    ))
                    .map_err(|e| plot_err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 12, y)], Palette99::pick(i).stroke_width(2))
                    });
            }
            legend(&mut chart, at)?;
        }
        root.present().map_err(|e| plot_err(&e))?;
    }
    Ok(svg)
}

/// Each block's share of the fused sum: Σ over the input of up(map_l), over the total.
fn shares(maps: &[Option<Vec<f32>>], sizes: &[(usize, usize)], h: usize, w: usize) -> Vec<f64> {
    let sums: Vec<f64> = maps
        .iter()
        .zip(sizes)
        .map(|(m, &(mh, mw))| match m {
            Some(m) => upsample(m, mh, mw, h, w).iter().map(|&v| v as f64).sum(),
            None => 0.0,
        })
        .collect();
    let total: f64 = sums.iter().sum();
    sums.iter()
        .map(|s| if total > 0.0 { s / total } else { 0.0 })
        .collect()
}

/// The JET colour bar, 256 × 12.
fn colour_bar() -> RgbImage {
    RgbImage::from_fn(256, 12, |x, _| image::Rgb(jet(x as u8)))
}

pub struct Html;

impl Format for Html {
    fn wanted(&self, o: &ExplainOptions) -> bool {
        o.report
    }

    fn write(&self, it: &Item, report: &Report) -> Result<Vec<PathBuf>> {
        let metrics =
            it.o.metrics
                .as_deref()
                .and_then(|l| metrics_of(l, it.image));
        Ok(vec![write(it, report, metrics)?])
    }

    fn is_report_page(&self) -> bool {
        true
    }
}

/// Write `<stem>.report.html` and its images (`<stem>.report/`) in the item's folder;
/// returns the page.
fn write(it: &Item, report: &Report, metrics: Option<&ImageMetrics>) -> Result<PathBuf> {
    let (dir, stem, out) = (it.dir, it.stem, &it.done.out);
    let sub = format!("{stem}.report");
    let folder = dir.join(&sub);
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::output(&folder, format!("cannot create it ({e})")))?;
    let (h, w) = (report.input_size[0], report.input_size[1]);
    write_png_atomic(&colour_bar(), &folder.join("colourbar.png"))?;
    let mut html = String::new();
    let title = format!("{stem}: {}", report_target(report));
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    fused_section(&mut html, out, stem, &sub);
    // Figure 4
    let share = shares(&out.maps, &out.map_sizes, h, w);
    let svg = block_plot(&out.act_maxabs, &share)?;
    let _ = writeln!(
        html,
        "<section><h2>Per block: max |activation| and share of the fused map</h2>\
<div class=\"plot\" role=\"img\" aria-label=\"bar chart of the maximum activation magnitude per block, with each block's share of the fused sum\">{svg}</div>"
    );
    block_table(&mut html, out, &it.ctx.weights.cfg, &share);
    let _ = writeln!(html, "</section>");
    if let Some(m) = metrics {
        metrics_section(&mut html, m, out.target)?;
    }
    block_sections(&mut html, it, &folder, &sub)?;
    prediction_section(&mut html, report);
    let _ = writeln!(
        html,
        "<p><a href=\"index.html\">all images</a></p></body></html>"
    );
    let page = dir.join(format!("{stem}.report.html"));
    write_bytes_atomic(html.as_bytes(), &page)?;
    Ok(page)
}

/// The fused overlays, one row per method, with its heat map and the colour bar.
fn fused_section(html: &mut String, out: &Output, stem: &str, sub: &str) {
    let _ = writeln!(html, "<section><h2>Fused maps</h2>");
    for e in &out.explainers {
        let (ov, hm) = png_names(Path::new(""), stem, &e.explainer);
        let name = e.explainer.fused_name();
        let _ = writeln!(
            html,
            "<figure class=\"fused\"><img src=\"{}\" alt=\"{} overlaid on the photo\"><img src=\"{}\" alt=\"{} heat map\">\
<figcaption>{} ({} fusion of blocks {}) <img class=\"bar\" src=\"{sub}/colourbar.png\" alt=\"colour bar: blue low, red high\"> low → high</figcaption></figure>",
            esc(&ov.display().to_string()),
            esc(&name),
            esc(&hm.display().to_string()),
            esc(&name),
            esc(e.explainer.method.name()),
            esc(e.explainer.fusion.name()),
            esc(&ranges(&used_blocks(&e.maps)))
        );
    }
    let _ = writeln!(html, "</section>");
}

/// Figure 3, per method: every fused block's own map over the photo, grouped by stage,
/// each as an image in `folder` (`sub` relative to the page).
fn block_sections(html: &mut String, it: &Item, folder: &Path, sub: &str) -> Result<()> {
    let (out, cfg) = (&it.done.out, &it.ctx.weights.cfg);
    let small = fit(it.photo, THUMB);
    for e in &out.explainers {
        let method = e.explainer.method.name();
        let _ = writeln!(html, "<section><h2>{} at every block</h2>", esc(method));
        let mut stage = usize::MAX;
        for l in used_blocks(&e.maps) {
            let b = &cfg.blocks[l];
            if b.stage != stage {
                if stage != usize::MAX {
                    let _ = writeln!(html, "</div>");
                }
                stage = b.stage;
                let _ = writeln!(html, "<h3>stage {stage}</h3><div class=\"strip\">");
            }
            let (mh, mw) = out.map_sizes[l];
            let m = e.maps[l].as_ref().unwrap();
            // each block's map on its own scale, so that weak blocks still show their shape
            let lo = m.iter().fold(f32::INFINITY, |a, &v| a.min(v));
            let hi = m.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            let norm: Vec<f32> = if hi > lo {
                m.iter().map(|v| (v - lo) / (hi - lo)).collect()
            } else {
                vec![0.0; m.len()]
            };
            let heat = heatmap_rgb(&norm, mh, mw, small.width(), small.height());
            let file = format!("{method}.{l:02}.png");
            write_png_atomic(&overlay(&small, &heat, it.o.alpha), &folder.join(&file))?;
            let flat = if hi > lo { "" } else { " (all zero)" };
            let _ = writeln!(
                html,
                "<figure><img src=\"{sub}/{file}\" alt=\"{method} at block {l}, {mh}×{mw}{flat}\" loading=\"lazy\">\
<figcaption>#{l} · {mh}×{mw} · peak {:.3e}{flat}</figcaption></figure>",
                hi.max(0.0)
            );
        }
        if stage != usize::MAX {
            let _ = writeln!(html, "</div>");
        }
        let _ = writeln!(html, "</section>");
    }
    Ok(())
}

/// The prediction and the run's facts.
fn prediction_section(html: &mut String, report: &Report) {
    let (h, w) = (report.input_size[0], report.input_size[1]);
    let _ = writeln!(
        html,
        "<section><h2>Prediction</h2><table><tr><th>#</th><th>output</th><th>probability</th></tr>"
    );
    for (i, t) in report.prediction.top.iter().enumerate() {
        let what = match (&t.label, t.lat, t.lon) {
            (Some(l), _, _) => format!("{} ({})", l, t.index),
            (None, Some(la), Some(lo)) => format!("cell {} ({la:+.4}, {lo:+.4})", t.index),
            _ => format!("{}", t.index),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.4}</td></tr>",
            i + 1,
            esc(&what),
            t.probability
        );
    }
    let _ = writeln!(html, "</table>");
    if let Some(c) = &report.prediction.confidence_km {
        let radii: Vec<String> = c.iter().map(|(r, p)| format!("{r} km: {p:.3}")).collect();
        let _ = writeln!(
            html,
            "<p>Probability within: {}</p>",
            esc(&radii.join(", "))
        );
    }
    let t = &report.timings;
    let _ = writeln!(
        html,
        "</section><section><h2>Run</h2><dl><dt>weights</dt><dd>{}</dd><dt>model</dt><dd>{}</dd>\
<dt>input</dt><dd>{}×{} (photo {}×{})</dd><dt>adapter</dt><dd>{}</dd>\
<dt>timings</dt><dd>decode {:.3} s, plan {:.3} s, GPU {:.3} s, write {:.3} s</dd></dl></section>",
        esc(&report.weights),
        esc(&report.model),
        h,
        w,
        report.original_size[0],
        report.original_size[1],
        esc(&report.adapter.line()),
        t.decode_preprocess_s,
        t.plan_build_s,
        t.gpu_s,
        t.write_s
    );
}

fn report_target(r: &Report) -> String {
    let t = &r.explained;
    match (&t.label, t.lat, t.lon) {
        (Some(l), _, _) => format!("{l}, p = {:.3}", t.probability),
        (None, Some(la), Some(lo)) => format!(
            "cell {} ({la:+.3}, {lo:+.3}), p = {:.3}",
            t.index, t.probability
        ),
        _ => format!("{}, p = {:.3}", t.index, t.probability),
    }
}

/// 0-31 style ranges of a sorted list.
fn ranges(v: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            format!("{}", v[i])
        } else {
            format!("{}-{}", v[i], v[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// One finished image in `index.html`.
pub struct IndexEntry {
    pub page: String,
    pub thumb: String,
    pub title: String,
}

impl IndexEntry {
    pub fn of(report: &Report, dir_rel: &Path, stem: &str) -> IndexEntry {
        let rel = |f: String| dir_rel.join(f).display().to_string();
        IndexEntry {
            page: rel(format!("{stem}.report.html")),
            thumb: rel(png_names(Path::new(""), stem, &report_first(report))
                .0
                .display()
                .to_string()),
            title: format!("{}: {}", stem, report_target(report)),
        }
    }
}

fn report_first(r: &Report) -> Explainer {
    let m = &r.methods[0];
    Explainer {
        method: Method::parse(m.method).expect("a method's own name"),
        fusion: Fusion::parse(m.fusion).expect("a rule's own name"),
    }
}

/// `<out>/index.html`: every report so far, with its overlay as the thumbnail.
pub fn write_index(out: &Path, entries: &[IndexEntry]) -> Result<()> {
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>combicam-gpu: {} images</title><style>{STYLE}</style></head><body>\n<h1>{} explained images</h1><div class=\"strip\">\n",
        entries.len(),
        entries.len()
    );
    for e in entries {
        let _ = writeln!(
            html,
            "<figure><a href=\"{}\"><img src=\"{}\" alt=\"{}\" loading=\"lazy\"></a><figcaption>{}</figcaption></figure>",
            esc(&e.page),
            esc(&e.thumb),
            esc(&e.title),
            esc(&e.title)
        );
    }
    html.push_str("</div></body></html>\n");
    write_bytes_atomic(html.as_bytes(), &out.join("index.html"))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem;max-width:1200px;color:#222}\
h1{font-size:1.3rem}h2{font-size:1.1rem;margin-top:1.5rem}h3{font-size:.95rem;margin:.6rem 0 .2rem}\
img{max-width:100%;height:auto}figure{margin:0}figcaption{font-size:.8rem;color:#555}\
.fused{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start;margin-bottom:1rem}\
.fused img{max-width:min(48%,560px)}.fused figcaption{width:100%}img.bar{width:128px;height:8px;vertical-align:middle}\
.strip{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.5rem}\
.plot svg{max-width:100%;height:auto}table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}\
.num td,.num th{padding:.1rem .5rem;font-size:.8rem}details{margin:.5rem 0}.warn{color:#a40}\
@media print{.strip{grid-template-columns:repeat(4,1fr)}a{color:inherit}}";
