//! The report's charts, drawn with `plotters` into SVG strings: the same SVG is a file
//! beside `report.md` and inline in `report.html`.

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use bench::{load::Bucket, Summary};
use common::config::{Mode, Policy};

pub const W: u32 = 900;
const H: u32 = 300;
/// The headline chart is taller: two panels under one title.
const HEADLINE_H: u32 = 380;
/// The legend has a column of its own right of the plot, so it never covers data.
pub const LEGEND_W: u32 = 190;
const SYNC: RGBColor = RGBColor(214, 96, 77);
const ASYNC: RGBColor = RGBColor(67, 147, 195);
const BUS_RPC: RGBColor = RGBColor(77, 160, 90);
const OTHER: RGBColor = RGBColor(120, 90, 170);
/// One shade per distinct fault window, in order of first appearance.
const WINDOW_SHADES: [RGBColor; 4] =
    [RGBColor(240, 190, 60), RGBColor(150, 110, 200), RGBColor(90, 180, 110), RGBColor(150, 150, 150)];

/// The colour of a mode, or of a variant (`sync hardened`): a policy besides naive is a
/// shade of its mode's colour, hardened darker, retry-storm lighter.
pub fn mode_color(label: &str) -> RGBColor {
    let mut words = label.split_whitespace();
    let base = match words.next().map(|m| <Mode as clap::ValueEnum>::from_str(m, false)) {
        Some(Ok(Mode::Sync)) => SYNC,
        Some(Ok(Mode::Async)) => ASYNC,
        Some(Ok(Mode::BusRpc)) => BUS_RPC,
        _ => OTHER,
    };
    let RGBColor(r, g, b) = base;
    match words.next().map(|p| <Policy as clap::ValueEnum>::from_str(p, false)) {
        Some(Ok(Policy::Hardened)) => RGBColor(r / 2, g / 2, b / 2),
        Some(Ok(Policy::RetryStorm)) => {
            let lighter = |c: u8| c + (255 - c) / 2;
            RGBColor(lighter(r), lighter(g), lighter(b))
        }
        _ => base,
    }
}

/// Whether a variant's line is dashed (retry-storm), so that shades apart it is told
/// from its mode's other lines in print as well.
fn dashed(label: &str) -> bool {
    label.split_whitespace().nth(1) == Some(Policy::RetryStorm.as_str())
}

/// Goodput over time, one line per variant: successes per second in each bucket, by
/// intended send time, with each window shaded. `timelines`: (label, bucket width ms,
/// buckets).
pub fn goodput(title: &str, timelines: &[(&str, u64, &[Bucket])], windows: &[Window]) -> String {
    svg(|root, keys| {
        let end = timelines.iter().map(|(_, w, b)| (b.len() as u64 * w) as f64 / 1000.0).fold(1.0, f64::max);
        let per_s = |w: u64, n: u64| n as f64 * 1000.0 / w.max(1) as f64;
        let top =
            timelines.iter().flat_map(|(_, w, b)| b.iter().map(move |x| per_s(*w, x.ok))).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart.configure_mesh().x_desc("time (s), by intended send time").y_desc("successes/s").draw()?;
        shade_windows(&mut chart, windows, (0.0, top), keys)?;
        for (label, w, buckets) in timelines {
            let style = mode_color(label).stroke_width(2);
            let points: Vec<(f64, f64)> = buckets.iter().map(|b| (b.t_ms as f64 / 1000.0, per_s(*w, b.ok))).collect();
            if dashed(label) {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?;
                keys.push((format!("{label} {DASHED}"), style));
            } else {
                chart.draw_series(LineSeries::new(points, style))?;
                keys.push((label.to_string(), style));
            }
        }
        Ok(())
    })
}

type Drawn = Result<(), Box<dyn std::error::Error>>;
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// Legend entries: a label and the style of its swatch (filled: a box; else a line).
type Keys = Vec<(String, ShapeStyle)>;

/// Draws a chart into the plot area left of the legend column, then its legend there.
fn svg(draw: impl FnOnce(&Area, &mut Keys) -> Drawn) -> String {
    svg_sized(H, draw)
}

/// [`svg`], `height` pixels high.
fn svg_sized(height: u32, draw: impl FnOnce(&Area, &mut Keys) -> Drawn) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, height)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(|e| e.to_string().into()).and_then(|()| {
            let (plot, side) = root.split_horizontally(W - LEGEND_W);
            let mut keys = Keys::new();
            draw(&plot, &mut keys)?;
            legend(&side, &keys)
        });
        if let Err(e) = drawn.and_then(|()| root.present().map_err(|e| e.to_string().into())) {
            let e = e.to_string().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            return format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"40\"><text x=\"10\" y=\"25\">chart could not be drawn: {e}</text></svg>");
        }
    }
    out
}

fn legend(area: &Area, keys: &Keys) -> Drawn {
    let font = ("sans-serif", 13).into_font().color(&BLACK);
    for (i, (label, style)) in keys.iter().enumerate() {
        let y = 40 + 20 * i as i32;
        if style.filled {
            area.draw(&Rectangle::new([(6, y - 6), (22, y + 6)], *style))?;
        } else if label.ends_with(DASHED) {
            area.draw(&PathElement::new([(4, y), (11, y)], *style))?;
            area.draw(&PathElement::new([(17, y), (24, y)], *style))?;
        } else {
            area.draw(&PathElement::new([(4, y), (24, y)], *style))?;
        }
        area.draw(&Text::new(label.clone(), (30, y - 7), font.clone()))?;
    }
    Ok(())
}

/// A fault window: from, to (s) and what it was, as recorded ("users killed").
pub type Window = (f64, f64, String);

/// Shades each fault window from `bottom` to `top`, one colour per distinct label, and
/// adds one legend entry per label.
fn shade_windows<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    windows: &[Window],
    (bottom, top): (Y::ValueType, Y::ValueType),
    keys: &mut Keys,
) -> Drawn
where
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    let mut labels: Vec<&str> = Vec::new();
    for (from, to, label) in windows {
        let i = labels.iter().position(|l| *l == label.as_str()).unwrap_or_else(|| {
            labels.push(label);
            labels.len() - 1
        });
        let shade = WINDOW_SHADES[i % WINDOW_SHADES.len()];
        chart.draw_series([Rectangle::new([(*from, bottom.clone()), (*to, top.clone())], shade.mix(0.3).filled())])?;
        if !keys.iter().any(|(k, _)| k == label) {
            keys.push((label.clone(), shade.mix(0.6).filled()));
        }
    }
    Ok(())
}

/// Successful requests per second over time, one line per mode, with each fault
/// window shaded in its own colour. `timelines`: (mode, bucket width ms, buckets).
pub fn timeline(title: &str, timelines: &[(&str, u64, &[Bucket])], windows: &[Window]) -> String {
    svg(|root, keys| {
        let end = timelines.iter().map(|(_, w, b)| (b.len() as u64 * w) as f64 / 1000.0).fold(1.0, f64::max);
        let per_s = |w: u64, n: u64| n as f64 * 1000.0 / w as f64;
        let top = timelines
            .iter()
            .flat_map(|(_, w, b)| b.iter().map(move |x| per_s(*w, x.ok + x.errors.values().sum::<u64>())))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart.configure_mesh().x_desc("time (s)").y_desc("requests/s").draw()?;
        shade_windows(&mut chart, windows, (0.0, top), keys)?;
        for (mode, w, buckets) in timelines {
            let color = mode_color(mode);
            let ok = buckets.iter().map(|b| (b.t_ms as f64 / 1000.0, per_s(*w, b.ok)));
            chart.draw_series(LineSeries::new(ok, color.stroke_width(2)))?;
            keys.push((format!("{mode} OK/s"), color.stroke_width(2)));
            let errors = buckets.iter().map(|b| (b.t_ms as f64 / 1000.0, per_s(*w, b.errors.values().sum())));
            chart.draw_series(LineSeries::new(errors, color.mix(0.9).stroke_width(1)).point_size(0))?;
            keys.push((format!("{mode} errors/s"), color.mix(0.9).stroke_width(1)));
        }
        Ok(())
    })
}

/// The runs of consecutive buckets that had successes, as (s, p99 ms) points: a p99
/// exists only where something succeeded, so a bucket without successes is a gap.
pub fn p99_segments(buckets: &[Bucket]) -> Vec<Vec<(f64, f64)>> {
    let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for b in buckets {
        if b.ok == 0 {
            if segments.last().is_some_and(|s| !s.is_empty()) {
                segments.push(Vec::new());
            }
        } else if let Some(s) = segments.last_mut() {
            s.push((b.t_ms as f64 / 1000.0, b.p99_us.max(1) as f64 / 1000.0));
        }
    }
    segments.retain(|s| !s.is_empty());
    segments
}

/// The p99 of every request per bucket, failures at their elapsed time, as (s, ms)
/// points: `None` for results from before it was recorded.
pub fn p99_all_points(buckets: &[Bucket]) -> Option<Vec<(f64, f64)>> {
    buckets.iter().any(|b| b.p99_all_us > 0).then(|| {
        buckets
            .iter()
            .filter(|b| b.ok + b.errors.values().sum::<u64>() > 0)
            .map(|b| (b.t_ms as f64 / 1000.0, b.p99_all_us.max(1) as f64 / 1000.0))
            .collect()
    })
}

/// p99 per bucket (log scale), per mode: of the successes (solid, broken where a bucket
/// had none) and of all requests, failures at their elapsed time (a thinner, lighter
/// line), so a window in which everything failed is neither blank nor hidden.
pub fn p99_timeline(title: &str, timelines: &[(&str, u64, &[Bucket])], windows: &[Window]) -> String {
    svg(|root, keys| {
        let end = timelines.iter().map(|(_, w, b)| (b.len() as u64 * w) as f64 / 1000.0).fold(1.0, f64::max);
        let top = timelines
            .iter()
            .flat_map(|(_, _, b)| b.iter().map(|x| x.p99_us.max(x.p99_all_us) as f64 / 1000.0))
            .fold(1.0, f64::max)
            * 2.0;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, (0.05..top).log_scale())?;
        chart.configure_mesh().x_desc("time (s)").y_desc("p99 (ms)").draw()?;
        shade_windows(&mut chart, windows, (0.05, top), keys)?;
        for (mode, _, buckets) in timelines {
            let color = mode_color(mode);
            for segment in p99_segments(buckets) {
                // A lone point would draw no line: a dot marks it.
                let dot = if segment.len() == 1 { 3 } else { 0 };
                chart.draw_series(LineSeries::new(segment, color.stroke_width(2)).point_size(dot))?;
            }
            keys.push((format!("{mode} p99, successes"), color.stroke_width(2)));
            if let Some(all) = p99_all_points(buckets) {
                chart.draw_series(LineSeries::new(all, color.mix(0.6).stroke_width(1)))?;
                keys.push((format!("{mode} p99, all requests"), color.mix(0.6).stroke_width(1)));
            }
        }
        Ok(())
    })
}

/// A percentile as the spectrum's x: 1/(1−p), so that 90 %, 99 %, 99.9 % are evenly
/// spaced on a log axis.
fn nines(percentile: f64) -> f64 {
    1.0 / (1.0 - percentile / 100.0).max(1e-9)
}

/// The label of a spectrum x: 2 → "50%", 10 → "90%", 1000 → "99.9%".
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let digits = if x <= 10.0 { 0 } else { (x.log10().round() as usize).saturating_sub(2) };
    format!("{p:.digits$}%")
}

/// The spectrum's points of a summary: its recorded spectrum, or, for results from
/// before it was kept, the four percentiles it has.
fn spectrum_points(s: &Summary) -> Vec<(f64, f64)> {
    let recorded: Vec<(f64, u64)> = if s.spectrum.is_empty() {
        vec![(50.0, s.p50_us), (90.0, s.p90_us), (99.0, s.p99_us), (99.9, s.p999_us)]
    } else {
        s.spectrum.clone()
    };
    recorded.into_iter().filter(|(_, us)| *us > 0).map(|(p, us)| (nines(p), us as f64 / 1000.0)).collect()
}

/// The percentile spectrum, HdrHistogram style: latency against 1/(1−p) on a log axis
/// labelled 50 %, 90 %, 99 %, 99.9 % … `series`: (label, mode, summary).
pub fn spectrum(title: &str, series: &[(String, &str, &Summary)]) -> String {
    svg(|root, keys| {
        let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, _, s)| spectrum_points(s)).collect();
        let top = all.iter().map(|p| p.1).fold(0.1, f64::max) * 2.0;
        let bottom = all.iter().map(|p| p.1).fold(top, f64::min) / 2.0;
        let right = 10f64.powf(all.iter().map(|p| p.0).fold(1000.0, f64::max).log10().ceil());
        let mut ticks = vec![1.0, 2.0];
        ticks.extend((1..=right.log10() as i32).map(|k| 10f64.powi(k)));
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (1.0..right).log_scale().with_key_points(ticks),
                (bottom.max(0.001)..top).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile (log scale of 1/(1−p))")
            .y_desc("latency (ms), successes only")
            .y_labels(8)
            .y_label_formatter(&|y: &f64| format!("{y:.3}").trim_end_matches('0').trim_end_matches('.').to_string())
            .x_label_formatter(&|x: &f64| percentile_label(*x))
            .draw()?;
        for (i, (label, mode, summary)) in series.iter().enumerate() {
            let color = mode_color(mode);
            let style = if i % 2 == 0 { color.stroke_width(2) } else { color.mix(0.6).stroke_width(2) };
            chart.draw_series(LineSeries::new(spectrum_points(summary), style).point_size(2))?;
            keys.push((label.clone(), style));
        }
        Ok(())
    })
}

/// A bar's value, or why it has none (drawn where the bar would be: "n/a", "-").
pub type Bar = Result<f64, String>;

/// Grouped bars: one group per category, one bar per mode. `values`: (mode, per
/// category value). `unit` labels the y axis.
pub fn bars(title: &str, categories: &[String], values: &[(&str, Vec<f64>)], unit: &str) -> String {
    let values: Vec<(&str, Vec<Bar>)> = values.iter().map(|(m, v)| (*m, v.iter().map(|&y| Ok(y)).collect())).collect();
    svg(|root, keys| {
        let bars = Grouped {
            caption: title,
            x_desc: None,
            y_desc: unit,
            categories,
            values: &values,
            top: None,
            y_format: None,
        };
        bars.draw(root, None)?;
        keys.extend(values.iter().map(|(mode, _)| (mode.to_string(), mode_color(mode).filled())));
        Ok(())
    })
}

/// The headline: per mode side by side, (a) the share of requests served while each
/// fault window lasted (a group per window, in %) and (b) sequential UserOrders p50
/// (ms). A mode without a figure gets no bar, and its reason where the bar would be.
/// `served`: (mode, per window); `p50`: (mode, ms).
pub fn headline(title: &str, windows: &[String], served: &[(&str, Vec<Bar>)], p50: &[(&str, Bar)]) -> String {
    svg_sized(HEADLINE_H, |root, keys| {
        let area = root.titled(title, ("sans-serif", 17))?;
        let (w, _) = area.dim_in_pixel();
        let (left, right) = area.split_horizontally(w * 7 / 10);
        let served_bars = Grouped {
            caption: "requests served while the fault lasted",
            x_desc: Some("fault window (its scenario's first round)"),
            y_desc: "served (% of requests sent in the window)",
            categories: windows,
            values: served,
            top: Some(110.0),
            y_format: Some(|y| format!("{y:.0}%")),
        };
        served_bars.draw(&left, Some(&|y| format!("{y:.0}")))?;
        if windows.is_empty() {
            let (w, h) = left.dim_in_pixel();
            let style = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
            left.draw_text("no fault scenario in this run", &style, (w as i32 / 2, h as i32 / 2))?;
        }
        let p50: Vec<(&str, Vec<Bar>)> = p50.iter().map(|(m, v)| (*m, vec![v.clone()])).collect();
        let latency = Grouped {
            caption: "latency, one request at a time",
            x_desc: Some("steady, round 1"),
            y_desc: "sequential UserOrders p50 (ms)",
            categories: &["UserOrders p50".to_string()],
            values: &p50,
            top: None,
            y_format: None,
        };
        latency.draw(&right, Some(&|y| format!("{y:.2}")))?;
        let modes = served.iter().chain(&p50).map(|(m, _)| *m);
        for mode in modes {
            if !keys.iter().any(|(k, _)| k == mode) {
                keys.push((mode.to_string(), mode_color(mode).filled()));
            }
        }
        Ok(())
    })
}

/// How a legend label ends when its line is dashed (the legend draws its swatch so).
pub const DASHED: &str = "(dashed)";

/// One mode's line pair on a latency curve: (x, p50 ms, p99 ms) points, x rising, and
/// an x to mark on its p99 line (the knee).
pub struct Curve<'a> {
    pub mode: &'a str,
    pub points: Vec<(f64, f64, f64)>,
    pub mark: Option<f64>,
}

/// The y range (ms, log) that holds every point of `curves`.
fn curve_range(curves: &[Curve]) -> (f64, f64) {
    let ys = curves.iter().flat_map(|c| c.points.iter().flat_map(|p| [p.1, p.2])).filter(|y| *y > 0.0);
    let (lo, hi) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    if hi == 0.0 {
        (0.01, 1.0)
    } else {
        (lo / 2.0, hi * 2.0)
    }
}

/// Draws each curve's p50 (solid) and p99 (dashed) lines, and its mark (a dot on the
/// p99 line), with their legend entries (what the percentiles are of is the y axis's
/// to say).
fn draw_curves<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    curves: &[Curve],
    mark_label: &str,
    keys: &mut Keys,
) -> Drawn
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let positive = |y: f64| y.max(0.001);
    for c in curves {
        let color = mode_color(c.mode);
        let p50: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, positive(p.1))).collect();
        let p99: Vec<(f64, f64)> = c.points.iter().map(|p| (p.0, positive(p.2))).collect();
        chart.draw_series(LineSeries::new(p50, color.stroke_width(2)).point_size(2))?;
        keys.push((format!("{} p50", c.mode), color.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(p99.clone(), 6, 4, color.stroke_width(2)))?;
        chart.draw_series(p99.iter().map(|&p| Circle::new(p, 2, color.filled())))?;
        keys.push((format!("{} p99 {DASHED}", c.mode), color.stroke_width(2)));
        if let Some(x) = c.mark {
            if let Some(&(_, y)) = p99.iter().find(|p| p.0 == x) {
                chart.draw_series([Circle::new((x, y), 7, BLACK.stroke_width(2))])?;
            }
        }
    }
    if curves.iter().any(|c| c.mark.is_some()) {
        keys.push((mark_label.to_owned(), BLACK.stroke_width(2)));
    }
    Ok(())
}

/// Latency (log) against offered load (linear), p50 and p99 per mode, each mode's
/// knee circled on its p99 line.
pub fn load_curve(title: &str, curves: &[Curve]) -> String {
    svg(|root, keys| {
        let right = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).fold(1.0, f64::max) * 1.05;
        let (bottom, top) = curve_range(curves);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..right, (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered load (requests/s)")
            .y_desc("latency (ms), all requests")
            .x_label_formatter(&|x: &f64| format!("{x:.0}"))
            .y_label_formatter(&|y: &f64| format!("{y:.3}").trim_end_matches('0').trim_end_matches('.').to_string())
            .draw()?;
        draw_curves(&mut chart, curves, "knee (circled on p99)", keys)
    })
}

/// Latency (log) against a count (log), p50 and p99 per mode.
pub fn count_curve(title: &str, x_desc: &str, y_desc: &str, curves: &[Curve]) -> String {
    svg(|root, keys| {
        let xs = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0)).filter(|x| *x > 0.0);
        let (left, right) = xs.fold((f64::MAX, 1.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let (left, right) = (10f64.powf(left.min(right).log10().floor()), 10f64.powf(right.log10().ceil()).max(10.0));
        let (bottom, top) = curve_range(curves);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((left..right).log_scale(), (bottom..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x: &f64| format!("{x:.0}"))
            .y_label_formatter(&|y: &f64| format!("{y:.3}").trim_end_matches('0').trim_end_matches('.').to_string())
            .draw()?;
        draw_curves(&mut chart, curves, "", keys)
    })
}

/// A panel of grouped bars: one group per category, one bar per mode.
struct Grouped<'a> {
    caption: &'a str,
    x_desc: Option<&'a str>,
    y_desc: &'a str,
    categories: &'a [String],
    values: &'a [(&'a str, Vec<Bar>)],
    /// The y axis's top; by default a fifth above the highest bar.
    top: Option<f64>,
    /// How the y axis's labels are written (by default plotters').
    y_format: Option<fn(&f64) -> String>,
}

impl Grouped<'_> {
    /// Draws the panel; with `label`, each bar's value is written above it.
    fn draw(&self, area: &Area, label: Option<&dyn Fn(f64) -> String>) -> Drawn {
        let highest = self
            .values
            .iter()
            .flat_map(|(_, v)| v.iter().filter_map(|y| y.as_ref().ok()))
            .fold(1e-9, |a, &b| f64::max(a, b));
        let top = self.top.unwrap_or(highest * 1.2);
        let n = self.categories.len().max(1) as f64;
        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, ("sans-serif", 15))
            .margin(10)
            .x_label_area_size(if self.x_desc.is_some() { 45 } else { 35 })
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..n, 0.0..top)?;
        let labels = self.categories.to_vec();
        let label_of = |x: &f64| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        };
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh().y_desc(self.y_desc).x_labels(self.categories.len() * 2 + 1).x_label_formatter(&label_of);
        if let Some(x_desc) = self.x_desc {
            mesh.x_desc(x_desc);
        }
        if let Some(y_format) = &self.y_format {
            mesh.y_label_formatter(y_format);
        }
        mesh.draw()?;
        let width = 0.8 / self.values.len().max(1) as f64;
        let above = ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
        for (k, (mode, v)) in self.values.iter().enumerate() {
            let color = mode_color(mode);
            for (i, y) in v.iter().enumerate() {
                let x0 = i as f64 + 0.1 + k as f64 * width;
                let middle = x0 + width * 0.45;
                match y {
                    Ok(y) => {
                        chart.draw_series([Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *y)], color.filled())])?;
                        if let Some(label) = label {
                            chart.draw_series([Text::new(label(*y), (middle, *y), above.clone())])?;
                        }
                    }
                    // No bar: the reason stands where it would be, in the mode's colour.
                    Err(why) => {
                        let style = above.clone().color(&color);
                        chart.draw_series([Text::new(why.clone(), (middle, 0.0), style)])?;
                    }
                }
            }
        }
        Ok(())
    }
}
