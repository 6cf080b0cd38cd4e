//! SVG plots (`--plot DIR`), rendered with plotters from plain result
//! structs, so that a test can render each one from fixed numbers.
//!
//! | file | from | series |
//! |---|---|---|
//! | `scaling_throughput.svg` | [`Throughput`] | own GIL, one interpreter, shared GIL, control (plain threads), CPython's when measured |
//! | `scaling_wake_latency.svg` | [`WakeLatency`] | ours, control (OS wake-up), CPython's when measured |
//! | `gc_pause_histogram.svg`, `gc_pause_timeline.svg` | [`GcPauses`] | ours, CPython's when measured |
//! | `memory_rss.svg`, `soak_rss.svg` | [`RssTimeline`] | RSS of the process, and the control's when there is one |

use plotters::prelude::*;

/// One named series of (x, y) points.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points in x order.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `label`.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { label: label.into(), points }
    }
}

/// Throughput against threads, one series per configuration (Mops/s for
/// ours and the control; CPython's are relative, see `stress/py/`).
#[derive(Clone, Debug, Default)]
pub struct Throughput {
    /// (threads, Mops/s) per configuration: own GIL, one interpreter,
    /// shared GIL, control.
    pub series: Vec<Series>,
    /// CPython's speedup curves (x threads, y speedup over its 1 thread), if measured.
    pub cpython_speedup: Vec<Series>,
    /// The machine's load during the run, shown in the title (e.g. "machine quiet").
    pub load_note: String,
}

/// Wake-latency samples in microseconds.
#[derive(Clone, Debug, Default)]
pub struct WakeLatency {
    /// (label, samples in µs): ours, the control, CPython's when measured.
    pub samples: Vec<(String, Vec<f64>)>,
}

/// GC pauses of one or more runs.
#[derive(Clone, Debug, Default)]
pub struct GcPauses {
    /// (label, pauses as (start s since the loop began, length ms)).
    pub runs: Vec<(String, Vec<(f64, f64)>)>,
}

/// RSS samples over time.
#[derive(Clone, Debug, Default)]
pub struct RssTimeline {
    /// Plot title.
    pub title: String,
    /// (label, (seconds, MiB)) per series.
    pub series: Vec<Series>,
}

/// A plot a scenario asks for.
#[derive(Clone, Debug)]
pub enum Plot {
    /// `scaling_throughput.svg`
    Throughput(Throughput),
    /// `scaling_wake_latency.svg`
    WakeLatency(WakeLatency),
    /// `gc_pause_histogram.svg` and `gc_pause_timeline.svg`
    GcPauses(GcPauses),
    /// `<name>_rss.svg`
    Rss(&'static str, RssTimeline),
}

/// Renders `plot` into (file name, SVG text) pairs.
pub fn render(plot: &Plot) -> Vec<(String, String)> {
    match plot {
        Plot::Throughput(t) => vec![("scaling_throughput.svg".into(), throughput(t))],
        Plot::WakeLatency(w) => vec![("scaling_wake_latency.svg".into(), wake_latency(w))],
        Plot::GcPauses(g) => {
            vec![
                ("gc_pause_histogram.svg".into(), gc_pause_histogram(g)),
                ("gc_pause_timeline.svg".into(), gc_pause_timeline(g)),
            ]
        }
        Plot::Rss(name, r) => vec![(format!("{name}_rss.svg"), rss_over_time(r))],
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(120, 120, 120),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// A line chart of `series` (x linear or log, y linear or log), with markers.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: &'a [Series],
    log_x: bool,
    log_y: bool,
    markers: bool,
    /// Lines between points (false: markers only).
    lines: bool,
    /// Dashed second group (drawn after `series`, on the same axes), e.g. CPython's.
    dashed: &'a [Series],
    /// The color (index into the solid series' colors) of each dashed series.
    dashed_colors: &'a [usize],
    /// Fixed x range, else from the data.
    x_range: Option<(f64, f64)>,
    /// Room above the data for the legend (a factor on the y span, linear y only).
    headroom: f64,
    /// Where the legend goes.
    legend: SeriesLabelPosition,
}

fn bounds(v: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite() && (!log || *x > 0.0)) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return if log { (0.1, 10.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 1.5, hi * 1.5)
    } else {
        let pad = ((hi - lo) * 0.05).max(hi.abs() * 0.05).max(1e-9);
        ((lo - pad).min(if lo >= 0.0 { 0.0 } else { lo - pad }), hi + pad)
    }
}

fn draw(c: &Chart<'_>) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
        root.fill(&WHITE).expect("svg fill");
        let all = || c.series.iter().chain(c.dashed).flat_map(|s| s.points.iter().copied());
        let (x0, x1) = c.x_range.unwrap_or_else(|| bounds(all().map(|p| p.0), c.log_x));
        let (y0, mut y1) = bounds(all().map(|p| p.1), c.log_y);
        if !c.log_y {
            y1 = y0 + (y1 - y0) * c.headroom;
        }
        let mut b = ChartBuilder::on(&root);
        b.caption(c.title, ("sans-serif", 20)).margin(12).x_label_area_size(40).y_label_area_size(60);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart.configure_mesh().x_desc(c.x_label).y_desc(c.y_label).draw().expect("svg mesh");
                for (k, s) in c.series.iter().chain(c.dashed).enumerate() {
                    let dashed = k >= c.series.len();
                    let ci = if dashed { c.dashed_colors.get(k - c.series.len()).copied().unwrap_or(k) } else { k };
                    let color = COLORS[ci % COLORS.len()];
                    let pts: Vec<(f64, f64)> = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| {
                            p.0.is_finite() && p.1.is_finite() && (!c.log_x || p.0 > 0.0) && (!c.log_y || p.1 > 0.0)
                        })
                        .collect();
                    let style = color.stroke_width(if dashed { 1 } else { 2 });
                    let legend =
                        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2));
                    if !c.lines {
                        // Markers only (a scatter), labelled.
                        chart
                            .draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
                            .expect("svg markers")
                            .label(s.label.as_str())
                            .legend(legend);
                        continue;
                    }
                    let series = if dashed {
                        chart.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style)).expect("svg series")
                    } else {
                        chart.draw_series(LineSeries::new(pts.clone(), style)).expect("svg series")
                    };
                    series.label(s.label.as_str()).legend(legend);
                    if c.markers {
                        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).expect("svg markers");
                    }
                }
                chart
                    .configure_series_labels()
                    .position(c.legend.clone())
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .expect("svg legend");
            }};
        }
        match (c.log_x, c.log_y) {
            (false, false) => body!(b.build_cartesian_2d(x0..x1, y0..y1).expect("svg chart")),
            (true, false) => body!(b.build_cartesian_2d((x0..x1).log_scale(), y0..y1).expect("svg chart")),
            (false, true) => body!(b.build_cartesian_2d(x0..x1, (y0..y1).log_scale()).expect("svg chart")),
            (true, true) => body!(b.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()).expect("svg chart")),
        }
        root.present().expect("svg present");
    }
    svg
}

/// Throughput against threads; CPython's speedup curves (dimensionless) are
/// scaled onto the Mops/s axis by our own GIL's 1-thread rate, dashed, so
/// that their shape compares (their label says so).
pub fn throughput(t: &Throughput) -> String {
    let base = t.series.first().and_then(|s| s.points.first()).map_or(1.0, |p| p.1);
    let dashed: Vec<Series> = t
        .cpython_speedup
        .iter()
        .map(|s| {
            Series::new(
                format!("{} (speedup x own GIL 1-thread rate)", s.label),
                s.points.iter().map(|&(x, y)| (x, y * base)).collect(),
            )
        })
        .collect();
    let title = if t.load_note.is_empty() {
        "CPU-bound throughput vs threads".to_string()
    } else {
        format!("CPU-bound throughput vs threads ({})", t.load_note)
    };
    // Each CPython curve in the color of our matching configuration.
    let dashed_colors: Vec<usize> = t
        .cpython_speedup
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let key = ["own GIL", "one interpreter", "shared GIL"].iter().position(|w| s.label.contains(w));
            key.unwrap_or(t.series.len() + k)
        })
        .collect();
    draw(&Chart {
        title: &title,
        x_label: "threads",
        y_label: "Mops/s (10^6 work units per second)",
        series: &t.series,
        log_x: false,
        log_y: false,
        markers: true,
        lines: true,
        dashed: &dashed,
        dashed_colors: &dashed_colors,
        x_range: Some((0.8, t.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0, f64::max) + 0.2)),
        headroom: 1.45,
        legend: SeriesLabelPosition::UpperLeft,
    })
}

/// The empirical distribution (CDF) of each sample set, on a log latency axis.
pub fn wake_latency(w: &WakeLatency) -> String {
    let series: Vec<Series> = w.samples.iter().map(|(label, v)| Series::new(label.clone(), cdf(v))).collect();
    draw(&Chart {
        title: "Wake latency after a 1 ms blocking call, beside a CPU-bound thread (CDF)",
        x_label: "latency (us, log scale)",
        y_label: "fraction of wake-ups <= x",
        series: &series,
        log_x: true,
        log_y: false,
        markers: false,
        lines: true,
        dashed: &[],
        dashed_colors: &[],
        x_range: None,
        headroom: 1.0,
        legend: SeriesLabelPosition::LowerRight,
    })
}

/// (value, fraction ≤ value) steps of `v`, at most ~400 points.
fn cdf(v: &[f64]) -> Vec<(f64, f64)> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).map(|x| x.max(1e-3)).collect();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let step = (n / 400).max(1);
    let mut out: Vec<(f64, f64)> = (0..n).step_by(step).map(|i| (s[i], (i + 1) as f64 / n as f64)).collect();
    if let Some(&last) = s.last() {
        out.push((last, 1.0));
    }
    out
}

/// The share of pauses in each log-spaced bin of pause length (10 bins a
/// decade), one step line per run, so runs with different counts compare.
pub fn gc_pause_histogram(g: &GcPauses) -> String {
    let series: Vec<Series> = g
        .runs
        .iter()
        .map(|(label, p)| {
            let ms: Vec<f64> = p.iter().map(|x| x.1.max(1e-4)).collect();
            Series::new(format!("{label} ({} pauses)", ms.len()), log_histogram(&ms))
        })
        .collect();
    draw(&Chart {
        title: "GC pause lengths (share of pauses per bin)",
        x_label: "pause (ms, log scale)",
        y_label: "share of pauses",
        series: &series,
        log_x: true,
        log_y: false,
        markers: false,
        lines: true,
        dashed: &[],
        dashed_colors: &[],
        x_range: None,
        headroom: 1.3,
        legend: SeriesLabelPosition::UpperRight,
    })
}

/// Step-line points of a histogram with 10 log bins a decade.
fn log_histogram(ms: &[f64]) -> Vec<(f64, f64)> {
    if ms.is_empty() {
        return Vec::new();
    }
    let bin = |x: f64| (x.log10() * 10.0).floor() as i64;
    let lo = ms.iter().map(|&x| bin(x)).min().unwrap_or(0);
    let hi = ms.iter().map(|&x| bin(x)).max().unwrap_or(0);
    let mut counts = vec![0usize; (hi - lo + 1) as usize];
    for &x in ms {
        counts[(bin(x) - lo) as usize] += 1;
    }
    let edge = |b: i64| 10f64.powf(b as f64 / 10.0);
    let n = ms.len() as f64;
    let mut pts = vec![(edge(lo), 0.0)];
    for (k, &c) in counts.iter().enumerate() {
        let b = lo + k as i64;
        pts.push((edge(b), c as f64 / n));
        pts.push((edge(b + 1), c as f64 / n));
    }
    pts.push((edge(hi + 1), 0.0));
    pts
}

/// Each pause as a point at its start time, with its length (log scale).
pub fn gc_pause_timeline(g: &GcPauses) -> String {
    let series: Vec<Series> = g
        .runs
        .iter()
        .map(|(label, p)| Series::new(label.clone(), p.iter().map(|x| (x.0, x.1.max(1e-4))).collect()))
        .collect();
    draw(&Chart {
        title: "GC pauses over the loop (each pause at its start)",
        x_label: "time since the loop began (s)",
        y_label: "pause (ms, log scale)",
        series: &series,
        log_x: false,
        log_y: true,
        markers: true,
        lines: false,
        dashed: &[],
        dashed_colors: &[],
        x_range: None,
        headroom: 1.0,
        legend: SeriesLabelPosition::LowerRight,
    })
}

/// RSS over time.
pub fn rss_over_time(r: &RssTimeline) -> String {
    draw(&Chart {
        title: &r.title,
        x_label: "time (s)",
        y_label: "RSS (MiB)",
        series: &r.series,
        log_x: false,
        log_y: false,
        markers: false,
        lines: true,
        dashed: &[],
        dashed_colors: &[],
        x_range: None,
        headroom: 1.3,
        legend: SeriesLabelPosition::UpperLeft,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts and the count of polylines in an SVG (it must parse).
    fn parse(svg: &str) -> (Vec<String>, usize) {
        let doc = roxmltree::Document::parse(svg).expect("the SVG parses as XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "text")
            .map(|n| n.descendants().filter_map(|t| t.text()).collect::<String>())
            .collect();
        let lines = doc.descendants().filter(|n| n.tag_name().name() == "polyline").count();
        (texts, lines)
    }

    fn has(texts: &[String], label: &str) -> bool {
        texts.iter().any(|t| t.contains(label))
    }

    fn curve(label: &str, f: impl Fn(f64) -> f64) -> Series {
        Series::new(label, (1..=4).map(|t| (t as f64, f(t as f64))).collect())
    }

    #[test]
    fn throughput_has_every_configuration_and_cpython() {
        let t = Throughput {
            series: vec![
                curve("own GIL (N interpreters)", |t| 14.0 * t),
                curve("one interpreter (N threads)", |_| 14.0),
                curve("shared GIL (N interpreters on main's GIL)", |_| 13.9),
                curve("control (plain threads)", |t| 14.5 * t),
            ],
            cpython_speedup: vec![curve("CPython 3.13.0 own GIL", |t| 0.95 * t)],
            load_note: "machine quiet: control 1.98x of 2x".into(),
        };
        let svg = throughput(&t);
        let (texts, lines) = parse(&svg);
        for s in t.series.iter().chain(&t.cpython_speedup) {
            assert!(has(&texts, &s.label), "legend lacks {:?}; texts: {texts:?}", s.label);
        }
        assert!(has(&texts, "threads") && has(&texts, "Mops/s"), "axis labels: {texts:?}");
        assert!(has(&texts, "(machine quiet: control 1.98x of 2x)"), "title: {texts:?}");
        // One line per solid series; the dashed one is many short lines.
        assert!(lines >= 5, "expected at least 5 polylines, got {lines}");
    }

    #[test]
    fn wake_latency_is_one_cdf_per_sample_set() {
        let w = WakeLatency {
            samples: vec![
                ("subinterp".into(), (1..=100).map(|k| k as f64 * 0.1).collect()),
                ("control (OS wake-up)".into(), (1..=100).map(|k| k as f64 * 0.5).collect()),
                ("CPython 3.13.0".into(), vec![5000.0, 5200.0, 5400.0]),
            ],
        };
        let (texts, lines) = parse(&wake_latency(&w));
        for (label, _) in &w.samples {
            assert!(has(&texts, label), "legend lacks {label:?}: {texts:?}");
        }
        assert!(lines >= 3, "{lines} polylines");
        let c = cdf(&[3.0, 1.0, 2.0]);
        assert_eq!(c.last(), Some(&(3.0, 1.0)));
        assert_eq!(c[0], (1.0, 1.0 / 3.0));
    }

    #[test]
    fn gc_plots_show_ours_and_cpython() {
        let g = GcPauses {
            runs: vec![
                ("subinterp".into(), (0..50).map(|k| (k as f64 * 0.01, 0.02 + (k % 7) as f64 * 0.5)).collect()),
                ("CPython 3.13.0".into(), (0..20).map(|k| (k as f64 * 0.03, 1.0 + k as f64)).collect()),
            ],
        };
        let (texts, lines) = parse(&gc_pause_histogram(&g));
        assert!(has(&texts, "subinterp (50 pauses)") && has(&texts, "CPython 3.13.0 (20 pauses)"), "{texts:?}");
        assert!(lines >= 2, "{lines} polylines");
        let (texts, _) = parse(&gc_pause_timeline(&g));
        assert!(has(&texts, "subinterp") && has(&texts, "CPython 3.13.0"), "{texts:?}");
        let doc_circles = gc_pause_timeline(&g).matches("<circle").count();
        assert_eq!(doc_circles, 70, "one marker per pause");
        // The histogram's shares add up to 1 per run.
        let h = log_histogram(&[0.01, 0.02, 1.0, 1.0]);
        let total: f64 = h.iter().skip(1).step_by(2).map(|p| p.1).sum();
        assert!((total - 1.0).abs() < 1e-9, "{h:?}");
    }

    #[test]
    fn rss_plot_has_its_series() {
        let r = RssTimeline {
            title: "memory: RSS over time".into(),
            series: vec![
                Series::new("subinterp heap", (0..10).map(|k| (k as f64 * 0.1, 10.0 + k as f64)).collect()),
                Series::new("control (system allocator)", (0..10).map(|k| (k as f64 * 0.1, 12.0)).collect()),
            ],
        };
        let (texts, lines) = parse(&rss_over_time(&r));
        assert!(has(&texts, "memory: RSS over time"), "{texts:?}");
        assert!(has(&texts, "subinterp heap") && has(&texts, "control (system allocator)"), "{texts:?}");
        assert!(has(&texts, "RSS (MiB)"), "{texts:?}");
        assert!(lines >= 2, "{lines} polylines");
    }

    #[test]
    fn render_names_the_files() {
        let names: Vec<String> = [
            Plot::Throughput(Throughput::default()),
            Plot::WakeLatency(WakeLatency::default()),
            Plot::GcPauses(GcPauses::default()),
            Plot::Rss("soak", RssTimeline::default()),
        ]
        .iter()
        .flat_map(render)
        .map(|(n, svg)| {
            parse(&svg);
            n
        })
        .collect();
        assert_eq!(
            names,
            [
                "scaling_throughput.svg",
                "scaling_wake_latency.svg",
                "gc_pause_histogram.svg",
                "gc_pause_timeline.svg",
                "soak_rss.svg"
            ]
        );
    }
}
