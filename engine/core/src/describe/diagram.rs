//! A workflow as a picture: [`Diagram`] (nodes and edges, labels in the reader's language)
//! drawn as Mermaid text ([`Diagram::mermaid`]) or SVG ([`Diagram::svg`]). Node ids are
//! generated (`n0`, `n1` ...), never taken from step ids, so step ids in any script (Chinese
//! included), Mermaid's reserved words (`end`) and the drawn start node can never clash; the
//! step ids and titles are in the labels.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::i18n::Lang;
use crate::model::Text;
use crate::msg;

/// The shape of a node, by what the step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Where a case begins (not a step).
    Start,
    Task,
    End,
    /// An exclusive choice.
    Choice,
    /// A split or a join.
    Gate,
}

/// One node: the start, or a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The step's id (`None` for the start node).
    pub step: Option<String>,
    /// The step's title in the reader's language (its id when it has none).
    pub title: String,
    /// The step kind, as written.
    pub kind: String,
    pub shape: Shape,
}

/// One transition.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub label: Option<String>,
    /// A split's link to its join (not a path a case takes).
    pub dashed: bool,
}

/// Steps to set apart: where a case is now, and where it has been.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    pub current: BTreeSet<String>,
    pub visited: BTreeSet<String>,
}

/// A workflow's graph, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagram {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

fn text_of(v: Option<&Value>, lang: Lang) -> Option<String> {
    let t: Text = serde_json::from_value(v?.clone()).ok()?;
    let s = t.get(lang).trim().to_owned();
    (!s.is_empty()).then_some(s)
}

impl Diagram {
    /// The diagram of an effective definition, labelled in `lang`.
    pub fn of(def: &Value, lang: Lang) -> Diagram {
        let steps: Vec<(&str, &serde_json::Map<String, Value>)> = def
            .get("steps")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| Some((s.get("id")?.as_str()?, s.as_object()?))).collect())
            .unwrap_or_default();
        let labels = def.get("labels");
        let label_of = |id: &str| text_of(labels.and_then(|l| l.get(id)), lang).unwrap_or_else(|| id.to_owned());
        let mut nodes = vec![Node {
            step: None,
            title: msg!("diagram-start").render(lang),
            kind: String::new(),
            shape: Shape::Start,
        }];
        for (id, s) in &steps {
            let kind = s.get("kind").and_then(Value::as_str).unwrap_or("?").to_owned();
            let shape = match kind.as_str() {
                "end" => Shape::End,
                "choice" => Shape::Choice,
                "parallel" | "inclusive" | "foreach" | "join" => Shape::Gate,
                _ => Shape::Task,
            };
            let title = text_of(s.get("title"), lang).unwrap_or_else(|| (*id).to_owned());
            nodes.push(Node { step: Some((*id).to_owned()), title, kind, shape });
        }
        let index = |id: &str| nodes.iter().position(|n| n.step.as_deref() == Some(id));
        let mut edges = Vec::new();
        let mut edge = |from: usize, to: &str, label: Option<String>, dashed: bool| {
            if let Some(to) = index(to) {
                edges.push(Edge { from, to, label, dashed });
            }
        };
        if let Some(start) = def.get("start").and_then(Value::as_str) {
            edge(0, start, None, false);
        }
        for (i, (_, s)) in steps.iter().enumerate() {
            let from = i + 1;
            if let Some(Value::Object(on)) = s.get("on") {
                for (outcome, to) in on {
                    if let Some(to) = to.as_str() {
                        edge(from, to, Some(label_of(outcome)), false);
                    }
                }
            }
            if let Some(next) = s.get("next").and_then(Value::as_str) {
                edge(from, next, None, false);
            }
            for br in s.get("branches").and_then(Value::as_array).into_iter().flatten() {
                match br {
                    Value::String(t) => edge(from, t, None, false),
                    Value::Object(m) => {
                        if let Some(t) = m.get("to").and_then(Value::as_str) {
                            edge(from, t, m.get("when").and_then(Value::as_str).map(str::to_owned), false);
                        }
                    }
                    _ => {}
                }
            }
            if let Some(body) = s.get("body").and_then(Value::as_str) {
                edge(from, body, Some(msg!("diagram-each-item").render(lang)), false);
            }
            if let Some(join) = s.get("join").and_then(Value::as_str) {
                edge(from, join, None, true);
            }
        }
        Diagram { nodes, edges }
    }

    /// The label of node `i`: its title, and the step id and kind when the title is not the id.
    pub fn label(&self, i: usize) -> Vec<String> {
        let n = &self.nodes[i];
        match &n.step {
            None => vec![n.title.clone()],
            Some(id) if *id == n.title => vec![n.title.clone(), n.kind.clone()],
            Some(id) => vec![n.title.clone(), format!("{id} · {}", n.kind)],
        }
    }

    /// A Mermaid flowchart.
    pub fn mermaid(&self, marks: &Marks) -> String {
        let mut out = String::from("flowchart TD\n");
        for (i, n) in self.nodes.iter().enumerate() {
            let text = self.label(i).iter().map(|l| mermaid_text(l)).collect::<Vec<_>>().join("<br/>");
            let node = match n.shape {
                Shape::Start => format!("n{i}((\"{text}\"))"),
                Shape::End => format!("n{i}([\"{text}\"])"),
                Shape::Choice => format!("n{i}{{\"{text}\"}}"),
                Shape::Gate => format!("n{i}[/\"{text}\"/]"),
                Shape::Task => format!("n{i}[\"{text}\"]"),
            };
            out.push_str(&format!("    {node}\n"));
        }
        for e in &self.edges {
            let arrow = if e.dashed { "-.->" } else { "-->" };
            match &e.label {
                Some(l) => out.push_str(&format!("    n{} {arrow}|\"{}\"| n{}\n", e.from, mermaid_text(l), e.to)),
                None => out.push_str(&format!("    n{} {arrow} n{}\n", e.from, e.to)),
            }
        }
        let class = |set: &BTreeSet<String>| -> Vec<String> {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.step.as_ref().is_some_and(|s| set.contains(s)))
                .map(|(i, _)| format!("n{i}"))
                .collect()
        };
        let (current, visited) = (class(&marks.current), class(&marks.visited));
        if !visited.is_empty() {
            out.push_str("    classDef visited fill:#e8f0fe,stroke:#5b7fbf\n");
            out.push_str(&format!("    class {} visited\n", visited.join(",")));
        }
        if !current.is_empty() {
            out.push_str("    classDef current fill:#fff3c4,stroke:#c98a00,stroke-width:3px\n");
            out.push_str(&format!("    class {} current\n", current.join(",")));
        }
        out
    }

    /// An SVG picture, with fonts that cover Chinese.
    pub fn svg(&self, marks: &Marks) -> String {
        super::svg::render(self, marks)
    }
}

/// Text inside a quoted Mermaid label: quotes and angle brackets as entity codes.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chinese_step_ids_reserved_words_and_quotes_never_break_mermaid() {
        let def = json!({
            "start": "登记",
            "labels": {"通过": {"zh-CN": "通过", "en": "passed"}},
            "steps": [
                {"id": "登记", "kind": "task", "title": "登记“提案”", "next": "表决"},
                {"id": "表决", "kind": "vote", "title": {"zh-CN": "居民表决", "en": "residents vote"}, "on": {"通过": "end", "未通过": "start"}},
                {"id": "start", "kind": "task", "title": "重新 \"开始\" <b>", "next": "end"},
                {"id": "end", "kind": "end"},
            ]
        });
        let d = Diagram::of(&def, Lang::ZhCn);
        let m = d.mermaid(&Marks::default());
        // One node per step plus the start, each with a generated id.
        let ids: Vec<&str> =
            m.lines().skip(1).take(5).map(|l| l.trim().split(['[', '(', '{']).next().unwrap()).collect();
        assert_eq!(ids, ["n0", "n1", "n2", "n3", "n4"]);
        for want in ["登记“提案”", "居民表决", "表决 · vote", "重新 #quot;开始#quot; #lt;b#gt;", "start · task", "end"]
        {
            assert!(m.contains(want), "{want} missing from\n{m}");
        }
        assert!(m.contains("n2 -->|\"通过\"| n4"), "{m}");
        assert!(m.contains("n2 -->|\"未通过\"| n3"), "{m}");
        assert!(m.contains("n0 --> n1"));
        let en = Diagram::of(&def, Lang::En).mermaid(&Marks::default());
        assert!(en.contains("residents vote") && en.contains("|\"passed\"|"), "{en}");
    }

    #[test]
    fn marks_set_apart_the_current_and_visited_steps() {
        let def =
            json!({"start": "a", "steps": [{"id": "a", "kind": "task", "next": "b"}, {"id": "b", "kind": "end"}]});
        let marks = Marks { current: ["b".to_owned()].into(), visited: ["a".to_owned()].into() };
        let m = Diagram::of(&def, Lang::En).mermaid(&marks);
        assert!(m.contains("class n1 visited") && m.contains("class n2 current"), "{m}");
    }
}
