//! SVG drawing of a [`Diagram`]: laid out by layout-rs, drawn by a render backend of our own,
//! with a font stack that covers Chinese and boxes sized for double-width characters.

use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::format::{ClipHandle, RenderBackend};
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;
use unicode_width::UnicodeWidthStr;

use super::diagram::{Diagram, Marks, Shape};

/// Fonts that have Chinese glyphs on common systems, then any sans-serif.
pub const FONT_STACK: &str = "'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', 'WenQuanYi Micro Hei', sans-serif";

const FONT_SIZE: usize = 14;
/// Width of one column (a Latin letter; a Chinese character takes two), in pixels.
const COLUMN: f64 = FONT_SIZE as f64 * 0.62;
const LINE: f64 = FONT_SIZE as f64 * 1.45;

fn size_of(lines: &[String], shape: Shape) -> Point {
    let columns = lines.iter().map(|l| UnicodeWidthStr::width(l.as_str())).max().unwrap_or(1).max(2);
    let (pad_x, pad_y) = match shape {
        Shape::Start => (26.0, 26.0),
        _ => (28.0, 16.0),
    };
    Point::new(columns as f64 * COLUMN + pad_x, lines.len().max(1) as f64 * LINE + pad_y)
}

fn look(fill: &str, line: &str, width: usize, rounded: usize) -> StyleAttr {
    StyleAttr::new(Color::fast(line), width, Some(Color::fast(fill)), rounded, FONT_SIZE)
}

/// Draws the diagram as an SVG document.
pub(super) fn render(d: &Diagram, marks: &Marks) -> String {
    let mut vg = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = Vec::new();
    for (i, n) in d.nodes.iter().enumerate() {
        let lines = d.label(i);
        let text = lines.join("\n");
        let step = n.step.as_deref();
        let state = match step {
            Some(s) if marks.current.contains(s) => "current",
            Some(s) if marks.visited.contains(s) => "visited",
            _ => "",
        };
        let style = match (state, n.shape) {
            ("current", _) => look("#fff3c4", "#c98a00", 3, 6),
            ("visited", _) => look("#e8f0fe", "#5b7fbf", 2, 6),
            (_, Shape::Start) => look("#f1f3f4", "#5f6368", 1, 0),
            (_, Shape::End) => look("#e6f4ea", "#188038", 1, 18),
            (_, Shape::Choice) => look("#fef7e0", "#b06000", 1, 2),
            (_, Shape::Gate) => look("#f3e8fd", "#8430ce", 1, 2),
            (_, Shape::Task) => look("#ffffff", "#3c4043", 1, 6),
        };
        let shape = match n.shape {
            Shape::Start => ShapeKind::Circle(text),
            _ => ShapeKind::Box(text),
        };
        let mut el = Element::create(shape, style, Orientation::TopToBottom, size_of(&lines, n.shape));
        let class = ["node", state].iter().filter(|c| !c.is_empty()).copied().collect::<Vec<_>>().join(" ");
        let data = step.map(|s| format!(" data-step=\"{}\"", escape(s))).unwrap_or_default();
        el.properties = Some(format!("class=\"{class}\"{data}"));
        handles.push(vg.add_node(el));
    }
    for e in &d.edges {
        let style = StyleAttr::new(Color::fast("#5f6368"), 1, None, 0, FONT_SIZE - 2);
        let line = if e.dashed { LineStyleKind::Dashed } else { LineStyleKind::Normal };
        let label = e.label.clone().unwrap_or_default();
        let arrow = Arrow::new(LineEndKind::None, LineEndKind::Arrow, line, &label, &style, &None, &None);
        vg.add_edge(arrow, handles[e.from], handles[e.to]);
    }
    let mut out = Writer { edge_labels: d.edges.iter().filter_map(|e| e.label.clone()).collect(), ..Writer::default() };
    if !d.nodes.is_empty() {
        vg.do_it(false, false, false, &mut out);
    }
    out.finish()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The render backend: collects SVG elements and the size of the picture.
#[derive(Default)]
struct Writer {
    body: String,
    width: f64,
    height: f64,
    arrows: usize,
    clips: Vec<String>,
    /// The edges' labels: the layout draws some of them as free text (on long edges), which
    /// must look like the others.
    edge_labels: std::collections::HashSet<String>,
}

impl Writer {
    fn grow(&mut self, at: Point, size: Point) {
        self.width = self.width.max(at.x + size.x + 5.0);
        self.height = self.height.max(at.y + size.y + 5.0);
    }

    fn finish(self) -> String {
        let (w, h) = (self.width.ceil().max(10.0), self.height.ceil().max(10.0));
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\n"
        );
        out.push_str(&format!(
            "<style>text {{ font-family: {FONT_STACK}; fill: #202124; }} .edge-label {{ font-size: {}px; fill: #3c4043; }}</style>\n",
            FONT_SIZE - 2
        ));
        out.push_str(
            "<defs><marker id=\"arrow-end\" markerWidth=\"10\" markerHeight=\"7\" refX=\"10\" refY=\"3.5\" orient=\"auto\"><polygon points=\"0 0, 10 3.5, 0 7\" fill=\"#5f6368\"/></marker>",
        );
        for c in &self.clips {
            out.push_str(c);
        }
        out.push_str("</defs>\n");
        out.push_str(&self.body);
        out.push_str("</svg>\n");
        out
    }
}

fn color(c: Option<Color>) -> String {
    c.map_or_else(|| "none".to_owned(), |c| c.to_web_color())
}

impl RenderBackend for Writer {
    fn draw_rect(
        &mut self,
        xy: Point,
        size: Point,
        look: &StyleAttr,
        properties: Option<String>,
        clip: Option<ClipHandle>,
    ) {
        self.grow(xy, size);
        let clip = clip.map(|c| format!(" clip-path=\"url(#clip{c})\"")).unwrap_or_default();
        self.body.push_str(&format!(
            "<g {}><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{clip}/></g>\n",
            properties.unwrap_or_default(),
            xy.x,
            xy.y,
            size.x,
            size.y,
            look.rounded,
            color(look.fill_color),
            look.line_color.to_web_color(),
            look.line_width
        ));
    }

    fn draw_line(&mut self, start: Point, stop: Point, look: &StyleAttr, properties: Option<String>) {
        self.body.push_str(&format!(
            "<g {}><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"{}\"/></g>\n",
            properties.unwrap_or_default(),
            start.x,
            start.y,
            stop.x,
            stop.y,
            look.line_color.to_web_color(),
            look.line_width
        ));
    }

    fn draw_circle(&mut self, xy: Point, size: Point, look: &StyleAttr, properties: Option<String>) {
        self.grow(xy, size.scale(0.5));
        self.body.push_str(&format!(
            "<g {}><ellipse cx=\"{:.1}\" cy=\"{:.1}\" rx=\"{:.1}\" ry=\"{:.1}\" fill=\"{}\" stroke=\"{}\" stroke-width=\"{}\"/></g>\n",
            properties.unwrap_or_default(),
            xy.x,
            xy.y,
            size.x / 2.0,
            size.y / 2.0,
            color(look.fill_color),
            look.line_color.to_web_color(),
            look.line_width
        ));
    }

    fn draw_text(&mut self, xy: Point, text: &str, look: &StyleAttr) {
        if self.edge_labels.contains(text) {
            self.body.push_str(&format!(
                "<text class=\"edge-label\" text-anchor=\"middle\" dominant-baseline=\"middle\" x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
                xy.x,
                xy.y,
                escape(text)
            ));
            return;
        }
        let lines: Vec<&str> = text.lines().collect();
        let height = lines.len() as f64 * LINE;
        let first = xy.y - height / 2.0 + LINE / 2.0;
        let mut spans = String::new();
        for (i, line) in lines.iter().enumerate() {
            let size = if i == 0 { look.font_size } else { look.font_size.saturating_sub(3).max(9) };
            spans.push_str(&format!(
                "<tspan x=\"{:.1}\" y=\"{:.1}\" font-size=\"{size}\">{}</tspan>",
                xy.x,
                first + i as f64 * LINE,
                escape(line)
            ));
        }
        self.body.push_str(&format!(
            "<text text-anchor=\"middle\" dominant-baseline=\"middle\" font-size=\"{}\">{spans}</text>\n",
            look.font_size
        ));
    }

    fn draw_arrow(
        &mut self,
        path: &[(Point, Point)],
        dashed: bool,
        head: (bool, bool),
        look: &StyleAttr,
        properties: Option<String>,
        text: &str,
    ) {
        if path.len() < 2 {
            return;
        }
        for p in path {
            self.grow(p.0, Point::zero());
            self.grow(p.1, Point::zero());
        }
        let mut d = format!(
            "M {:.1} {:.1} C {:.1} {:.1}, {:.1} {:.1}, {:.1} {:.1}",
            path[0].0.x, path[0].0.y, path[0].1.x, path[0].1.y, path[1].0.x, path[1].0.y, path[1].1.x, path[1].1.y
        );
        for p in path.iter().skip(2) {
            d.push_str(&format!(" S {:.1} {:.1}, {:.1} {:.1}", p.0.x, p.0.y, p.1.x, p.1.y));
        }
        let id = self.arrows;
        self.arrows += 1;
        let dash = if dashed { " stroke-dasharray=\"5,5\"" } else { "" };
        let end = if head.1 { " marker-end=\"url(#arrow-end)\"" } else { "" };
        self.body.push_str(&format!(
            "<g {}><path id=\"edge{id}\" d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"{dash}{end}/></g>\n",
            properties.unwrap_or_default(),
            look.line_color.to_web_color(),
            look.line_width
        ));
        if !text.is_empty() {
            self.body.push_str(&format!(
                "<text class=\"edge-label\" dy=\"-3\"><textPath href=\"#edge{id}\" startOffset=\"50%\" text-anchor=\"middle\">{}</textPath></text>\n",
                escape(text)
            ));
        }
    }

    fn create_clip(&mut self, xy: Point, size: Point, rounded_px: usize) -> ClipHandle {
        let handle = self.clips.len();
        self.clips.push(format!(
            "<clipPath id=\"clip{handle}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{rounded_px}\"/></clipPath>",
            xy.x, xy.y, size.x, size.y
        ));
        handle
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::describe::diagram::{Diagram, Marks};
    use crate::i18n::Lang;

    #[test]
    fn chinese_labels_get_a_chinese_font_and_boxes_wide_enough() {
        let def = json!({"start": "登记", "steps": [
            {"id": "登记", "kind": "task", "title": "登记居民提出的提案和意见", "next": "结束"},
            {"id": "结束", "kind": "end", "title": "<办结> & \"完成\""},
        ]});
        let svg =
            Diagram::of(&def, Lang::ZhCn).svg(&Marks { current: ["登记".to_owned()].into(), ..Default::default() });
        assert!(svg.contains("Noto Sans CJK SC") && !svg.contains("Times"), "{svg}");
        assert!(svg.contains("登记居民提出的提案和意见"));
        assert!(svg.contains("&lt;办结&gt; &amp; &quot;完成&quot;"), "text is escaped");
        assert!(svg.contains("class=\"node current\" data-step=\"登记\""), "{svg}");
        // 12 Chinese characters take 24 columns: the box is at least that wide.
        let width: f64 = svg
            .split("<rect ")
            .filter_map(|r| r.split("width=\"").nth(1)?.split('"').next()?.parse().ok())
            .fold(0.0, f64::max);
        assert!(width >= 24.0 * 14.0 * 0.6, "widest box {width}");
    }

    #[test]
    fn every_edge_label_looks_the_same_however_long_its_edge() {
        // `skip` jumps three ranks: the layout draws its label as free text.
        let def = json!({"start": "a", "steps": [
            {"id": "a", "kind": "choice", "on": {"通过": "b", "跳过": "d"}},
            {"id": "b", "kind": "task", "next": "c"},
            {"id": "c", "kind": "task", "next": "d"},
            {"id": "d", "kind": "end"},
        ]});
        let svg = Diagram::of(&def, Lang::ZhCn).svg(&Marks::default());
        for label in ["通过", "跳过"] {
            let at = svg.find(&format!(">{label}<")).unwrap_or_else(|| panic!("{label} drawn: {svg}"));
            let opening = &svg[svg[..at].rfind("<text ").unwrap()..at];
            assert!(opening.contains("class=\"edge-label\""), "{label}: {opening}");
        }
    }
}
