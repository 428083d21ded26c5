//! The report's charts, drawn with `plotters` into SVG strings: the same SVG is a file
//! beside `report.md` and inline in `report.html`.

use plotters::prelude::*;

use bench::{load::Bucket, Summary};

const W: u32 = 720;
const H: u32 = 300;
const SYNC: RGBColor = RGBColor(214, 96, 77);
const ASYNC: RGBColor = RGBColor(67, 147, 195);

pub fn mode_color(mode: &str) -> RGBColor {
    if mode == "sync" {
        SYNC
    } else {
        ASYNC
    }
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn svg(draw: impl FnOnce(DrawingArea<SVGBackend, plotters::coord::Shift>) -> Drawn) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        let drawn = root.fill(&WHITE).map_err(|e| e.to_string().into()).and_then(|()| draw(root.clone()));
        if let Err(e) = drawn.and_then(|()| root.present().map_err(|e| e.to_string().into())) {
            let e = e.to_string().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            return format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"40\"><text x=\"10\" y=\"25\">chart could not be drawn: {e}</text></svg>");
        }
    }
    out
}

/// Successful requests per second over time, one line per mode, with the fault
/// windows shaded. `timelines`: (mode, bucket width ms, buckets).
pub fn timeline(title: &str, timelines: &[(&str, u64, &[Bucket])], windows: &[(f64, f64, String)]) -> String {
    svg(|root| {
        let end = timelines.iter().map(|(_, w, b)| (b.len() as u64 * w) as f64 / 1000.0).fold(1.0, f64::max);
        let per_s = |w: u64, n: u64| n as f64 * 1000.0 / w as f64;
        let top = timelines
            .iter()
            .flat_map(|(_, w, b)| b.iter().map(move |x| per_s(*w, x.ok + x.errors.values().sum::<u64>())))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart.configure_mesh().x_desc("time (s)").y_desc("requests/s").draw()?;
        for (from, to, label) in windows {
            chart
                .draw_series([Rectangle::new([(*from, 0.0), (*to, top)], RGBColor(250, 220, 120).mix(0.35).filled())])?
                .label(label.clone())
                .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RGBColor(250, 220, 120).filled()));
        }
        for (mode, w, buckets) in timelines {
            let color = mode_color(mode);
            let ok = buckets.iter().map(|b| (b.t_ms as f64 / 1000.0, per_s(*w, b.ok)));
            chart
                .draw_series(LineSeries::new(ok, color.stroke_width(2)))?
                .label(format!("{mode} OK/s"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
            let errors = buckets.iter().map(|b| (b.t_ms as f64 / 1000.0, per_s(*w, b.errors.values().sum())));
            chart
                .draw_series(LineSeries::new(errors, color.mix(0.9).stroke_width(1)).point_size(0))?
                .label(format!("{mode} errors/s"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.mix(0.9).stroke_width(1)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        Ok(())
    })
}

/// p99 latency per bucket (log scale), one line per mode.
pub fn p99_timeline(title: &str, timelines: &[(&str, u64, &[Bucket])], windows: &[(f64, f64, String)]) -> String {
    svg(|root| {
        let end = timelines.iter().map(|(_, w, b)| (b.len() as u64 * w) as f64 / 1000.0).fold(1.0, f64::max);
        let top =
            timelines.iter().flat_map(|(_, _, b)| b.iter().map(|x| x.p99_us as f64 / 1000.0)).fold(1.0, f64::max) * 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..end, (0.05..top).log_scale())?;
        chart.configure_mesh().x_desc("time (s)").y_desc("p99 of successes (ms)").draw()?;
        for (from, to, _) in windows {
            chart.draw_series([Rectangle::new(
                [(*from, 0.05), (*to, top)],
                RGBColor(250, 220, 120).mix(0.35).filled(),
            )])?;
        }
        for (mode, _, buckets) in timelines {
            let color = mode_color(mode);
            let points =
                buckets.iter().filter(|b| b.p99_us > 0).map(|b| (b.t_ms as f64 / 1000.0, b.p99_us as f64 / 1000.0));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{mode} p99"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}

/// The percentile spectrum (HDR style): latency by percentile on a "nines" axis.
/// `series`: (label, mode, summary).
pub fn spectrum(title: &str, series: &[(String, &str, &Summary)]) -> String {
    // x = -log10(1 - q): 50 % → 0.3, 90 % → 1, 99 % → 2, 99.9 % → 3; max drawn at 4.
    let points = |s: &Summary| {
        vec![(0.301, s.p50_us), (1.0, s.p90_us), (2.0, s.p99_us), (3.0, s.p999_us), (4.0, s.max_us)]
            .into_iter()
            .filter(|(_, us)| *us > 0)
            .map(|(x, us)| (x, us as f64 / 1000.0))
            .collect::<Vec<_>>()
    };
    svg(|root| {
        let top = series.iter().flat_map(|(_, _, s)| points(s)).map(|p| p.1).fold(0.1, f64::max) * 2.0;
        let bottom = series.iter().flat_map(|(_, _, s)| points(s)).map(|p| p.1).fold(top, f64::min) / 2.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..4.3, (bottom.max(0.001)..top).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(5)
            .x_label_formatter(&|x: &f64| match (*x * 10.0).round() as i32 {
                0..=4 => "50%".into(),
                10 => "90%".into(),
                20 => "99%".into(),
                30 => "99.9%".into(),
                40 => "max".into(),
                _ => String::new(),
            })
            .draw()?;
        for (i, (label, mode, summary)) in series.iter().enumerate() {
            let color = mode_color(mode);
            let style = if i % 2 == 0 { color.stroke_width(2) } else { color.mix(0.6).stroke_width(2) };
            chart
                .draw_series(LineSeries::new(points(summary), style).point_size(3))?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], style));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        Ok(())
    })
}

/// Grouped bars: one group per category, one bar per mode. `values`: (mode, per
/// category value). `unit` labels the y axis.
pub fn bars(title: &str, categories: &[String], values: &[(&str, Vec<f64>)], unit: &str) -> String {
    svg(|root| {
        let top = values.iter().flat_map(|(_, v)| v.iter().copied()).fold(1e-9, f64::max) * 1.2;
        let n = categories.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(65)
            .build_cartesian_2d(0.0..n, 0.0..top)?;
        let labels = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc(unit)
            .x_labels(categories.len() * 2 + 1)
            .x_label_formatter(&move |x: &f64| {
                let i = x.floor() as usize;
                if (x - x.floor() - 0.5).abs() < 0.01 && i < labels.len() {
                    labels[i].clone()
                } else {
                    String::new()
                }
            })
            .draw()?;
        let width = 0.8 / values.len().max(1) as f64;
        for (k, (mode, v)) in values.iter().enumerate() {
            let color = mode_color(mode);
            chart
                .draw_series(v.iter().enumerate().map(|(i, &y)| {
                    let x0 = i as f64 + 0.1 + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, y)], color.filled())
                }))?
                .label(mode.to_string())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}
