//! The report's plots, drawn with plotters to SVG (inlined in the HTML) and PNG.
//!
//! Output is byte-for-byte reproducible: text is drawn with the embedded DejaVu Sans (no system
//! fonts), every series is drawn from ordered data, and bars are plain rectangles (plotters'
//! `Histogram` groups through a `HashMap`, whose order changes from run to run).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

/// Width and height of every plot, pixels.
pub const SIZE: (u32, u32) = (900, 480);

/// The colour of the overlay.
pub const OVERLAY: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
/// The colour of Calico.
pub const CALICO: RGBColor = RGBColor(0xd6, 0x27, 0x28);
/// Further colours, for more series.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x8c, 0x56, 0x4b),
];
/// Grey, for references.
pub const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);

const FONT: &str = "sans-serif";

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A solid line.
    Line,
    /// A dashed line (a model).
    Dashed,
    /// Points (measurements).
    Points,
    /// Points and a solid line through them.
    LinePoints,
    /// Crosses (published figures).
    Crosses,
}

/// One series of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Its legend.
    pub name: String,
    /// Its colour.
    pub color: RGBColor,
    /// How it is drawn.
    pub style: Style,
    /// (x, y), in order.
    pub points: Vec<(f64, f64)>,
}

/// A chart of series over two axes.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range.
    pub x: (f64, f64),
    /// Y range.
    pub y: (f64, f64),
    /// Logarithmic axes (both, or none).
    pub log: bool,
    /// The series.
    pub series: Vec<Series>,
    /// Vertical markers at x, with a label.
    pub marks: Vec<(f64, String)>,
}

/// Grouped bars: one group per category, one bar per series.
#[derive(Clone, Debug)]
pub struct Bars {
    /// Title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Category names, left to right.
    pub categories: Vec<String>,
    /// (legend, colour, one value per category).
    pub groups: Vec<(String, RGBColor, Vec<f64>)>,
    /// A horizontal reference line (the fair share), if any.
    pub reference: Option<f64>,
}

/// What a plot file shows.
#[derive(Clone, Debug)]
pub enum Figure {
    /// One chart.
    Chart(Chart),
    /// Charts side by side, with a common title.
    Panels(String, Vec<Chart>),
    /// Grouped bars.
    Bars(Bars),
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("DejaVu Sans is a valid font"));
    });
}

/// Draws `figure` to `dir/NAME.svg` and `dir/NAME.png`; returns the SVG text.
pub fn render(figure: &Figure, dir: &Path, name: &str) -> Result<String, String> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(figure, &root).map_err(|e| format!("{name}.svg: {e}"))?;
        root.present().map_err(|e| format!("{name}.svg: {e}"))?;
    }
    std::fs::write(dir.join(format!("{name}.svg")), &svg).map_err(|e| format!("{name}.svg: {e}"))?;
    let png = dir.join(format!("{name}.png"));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(figure, &root).map_err(|e| format!("{name}.png: {e}"))?;
        root.present().map_err(|e| format!("{name}.png: {e}"))?;
    }
    Ok(svg)
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    match figure {
        Figure::Chart(chart) => draw_chart(chart, root),
        Figure::Panels(title, charts) => {
            let area = root.titled(title, (FONT, 20))?;
            let panels = area.split_evenly((1, charts.len().max(1)));
            for (chart, panel) in charts.iter().zip(&panels) {
                draw_chart(chart, panel)?;
            }
            Ok(())
        }
        Figure::Bars(bars) => draw_bars(bars, root),
    }
}

fn draw_chart<DB: DrawingBackend>(chart: &Chart, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let (x0, x1) = chart.x;
    let (y0, y1) = chart.y;
    if chart.log {
        draw_on(chart, area, (x0..x1).log_scale(), (y0..y1).log_scale())
    } else {
        draw_on(chart, area, x0..x1, y0..y1)
    }
}

fn draw_on<DB, X, Y>(chart: &Chart, area: &DrawingArea<DB, Shift>, x: X, y: Y) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut context = ChartBuilder::on(area)
        .caption(&chart.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)?;
    let x_labels = (area.dim_in_pixel().0 / 90).clamp(3, 12) as usize;
    context
        .configure_mesh()
        .x_labels(x_labels)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    let (y0, y1) = chart.y;
    for (x, label) in &chart.marks {
        let style = ShapeStyle { color: GREY.mix(0.8), filled: false, stroke_width: 1 };
        context.draw_series(DashedLineSeries::new([(*x, y0), (*x, y1)], 4, 4, style))?;
        let text_style = TextStyle::from((FONT, 12)).color(&GREY);
        context.draw_series([Text::new(label.clone(), (*x, y1), text_style)])?;
    }
    for series in &chart.series {
        let color = series.color;
        let points = series.points.iter().copied();
        let stroke = ShapeStyle { color: color.to_rgba(), filled: false, stroke_width: 2 };
        let annotation = match series.style {
            Style::Line => context.draw_series(LineSeries::new(points, stroke))?,
            Style::Dashed => context.draw_series(DashedLineSeries::new(points, 8, 5, stroke))?,
            Style::Points => context.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?,
            Style::LinePoints => {
                context.draw_series(LineSeries::new(points.clone(), stroke))?;
                context.draw_series(points.map(|p| Circle::new(p, 4, color.filled())))?
            }
            Style::Crosses => context.draw_series(points.map(|p| Cross::new(p, 6, stroke)))?,
        };
        let annotation = annotation.label(series.name.clone());
        match series.style {
            Style::Points | Style::Crosses => {
                annotation.legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            }
            _ => {
                annotation.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], stroke));
            }
        }
    }
    if !chart.series.is_empty() {
        context
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 12))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xaa, 0xaa, 0xaa))
            .draw()?;
    }
    Ok(())
}

/// An axis label: whole numbers without decimals, others with as few as they need.
fn tick(value: &f64) -> String {
    let value = *value;
    if value.abs() >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else if (value * 10.0 - (value * 10.0).round()).abs() < 1e-9 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn draw_bars<DB: DrawingBackend>(bars: &Bars, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
    let categories = bars.categories.len().max(1);
    let most = bars.groups.iter().flat_map(|(_, _, v)| v.iter().copied()).fold(0.0_f64, f64::max);
    let top = (most * 1.15).max(bars.reference.unwrap_or(0.0) * 1.3).max(1e-9);
    let mut context = ChartBuilder::on(area)
        .caption(&bars.title, (FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..categories as f64, 0.0..top)?;
    let names = bars.categories.clone();
    context
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(categories * 2 + 1)
        .x_label_formatter(&|x: &f64| {
            let index = (*x - 0.5).round();
            if (*x - 0.5 - index).abs() < 1e-6 && index >= 0.0 {
                names.get(index as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&tick)
        .y_desc(bars.y_label.as_str())
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .draw()?;
    let groups = bars.groups.len().max(1) as f64;
    let width = 0.8 / groups;
    for (g, (name, color, values)) in bars.groups.iter().enumerate() {
        let color = *color;
        let rectangles = values.iter().enumerate().map(move |(c, &value)| {
            let left = c as f64 + 0.1 + g as f64 * width;
            Rectangle::new([(left, 0.0), (left + width * 0.92, value)], color.filled())
        });
        context
            .draw_series(rectangles)?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    if let Some(reference) = bars.reference {
        let style = ShapeStyle { color: GREY.to_rgba(), filled: false, stroke_width: 1 };
        context
            .draw_series(DashedLineSeries::new(
                [(0.0, reference), (categories as f64, reference)],
                6,
                4,
                style,
            ))?
            .label("fair share")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xaa, 0xaa, 0xaa))
        .draw()?;
    Ok(())
}
