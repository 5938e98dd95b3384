//! Likely duplicates among residents' reports: overlap of character bigrams (Chinese needs no
//! word splitting), plus a bonus when the place or the category match. A suggestion only: staff
//! decide whether two reports are one matter.

use std::collections::HashSet;

/// Added when two reports name the same place (after normalisation: `3号楼`, `三号楼`, `3栋`
/// and `3号楼2单元` are all building 3).
pub const LOCATION_BONUS: f64 = 0.15;
/// Added when two reports have the same category.
pub const CATEGORY_BONUS: f64 = 0.05;

/// What a report says, from a case's data.
#[derive(Clone, Debug, Default)]
pub struct Report<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub location: Option<&'a str>,
    pub category: Option<&'a str>,
}

/// A report made ready for comparison.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    grams: HashSet<(char, char)>,
    location: Option<String>,
    category: Option<String>,
}

impl Fingerprint {
    pub fn of(r: &Report<'_>) -> Self {
        let mut grams = bigrams(r.title);
        grams.extend(bigrams(r.text));
        Fingerprint {
            grams,
            location: r.location.and_then(location_key),
            category: r.category.filter(|c| !c.is_empty()).map(str::to_owned),
        }
    }

    /// How alike two reports are: Jaccard similarity of their bigrams (0 to 1), plus the
    /// place and category bonuses.
    pub fn score(&self, other: &Fingerprint) -> f64 {
        let union = self.grams.union(&other.grams).count();
        let mut s = if union == 0 { 0.0 } else { self.grams.intersection(&other.grams).count() as f64 / union as f64 };
        if self.location.is_some() && self.location == other.location {
            s += LOCATION_BONUS;
        }
        if self.category.is_some() && self.category == other.category {
            s += CATEGORY_BONUS;
        }
        s
    }
}

fn digit(c: char) -> Option<u32> {
    "一二三四五六七八九".chars().position(|d| d == c).map(|i| i as u32 + 1)
}

/// Letters and digits only, full-width digits and Chinese numerals (一 to 九十九) as ASCII digits.
fn normalise(s: &str) -> String {
    let chars: Vec<char> = s
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32).unwrap_or(c),
            _ => c,
        })
        .filter(|c| c.is_alphanumeric())
        .collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let tens_digit = digit(chars[i]).filter(|_| chars.get(i + 1) == Some(&'十'));
        if chars[i] == '十' || tens_digit.is_some() {
            let after = if tens_digit.is_some() { i + 2 } else { i + 1 };
            let units = chars.get(after).copied().and_then(digit);
            out.push_str(&(tens_digit.unwrap_or(1) * 10 + units.unwrap_or(0)).to_string());
            i = after + usize::from(units.is_some());
        } else if let Some(d) = digit(chars[i]) {
            out.push_str(&d.to_string());
            i += 1;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn bigrams(s: &str) -> HashSet<(char, char)> {
    let chars: Vec<char> = normalise(s).chars().collect();
    chars.windows(2).map(|w| (w[0], w[1])).collect()
}

/// A place as compared: a building's number (`3号楼`, `3栋`, `3幢`, `3座`, `三号楼2单元` -> `3`),
/// else the normalised text.
fn location_key(loc: &str) -> Option<String> {
    let s = normalise(loc);
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    let rest = &s[digits.len()..];
    if !digits.is_empty() && ["号楼", "号", "栋", "幢", "座", "楼"].iter().any(|m| rest.starts_with(m)) {
        return Some(digits);
    }
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerals_and_buildings_are_written_one_way() {
        assert_eq!(normalise("十二号楼，３栋！"), "12号楼3栋");
        // Punctuation goes first, as in the baseline: 二十三十五十 reads 23, 15, 10.
        assert_eq!(normalise("二十三、十五、十"), "231510");
        assert_eq!(normalise("五十 路灯"), "50路灯");
        assert_eq!(location_key("三号楼2单元").as_deref(), Some("3"));
        assert_eq!(location_key("12栋").as_deref(), Some("12"));
        assert_eq!(location_key("北门垃圾站").as_deref(), Some("北门垃圾站"));
        assert_eq!(location_key("  "), None);
    }

    /// The labelled set in tests/data/duplicates: every other member of a report's group ranks
    /// within its top max(3, group size - 1) suggestions (a tie with a non-member counts
    /// against).
    #[test]
    fn every_known_duplicate_ranks_in_the_top_suggestions() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/duplicates/reports.toml");
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let reports = table["report"].as_array().unwrap();
        assert!(reports.len() >= 30);
        let field = |r: &toml::Value, k: &str| r.get(k).and_then(toml::Value::as_str).map(str::to_owned);
        let prints: Vec<(String, Fingerprint)> = reports
            .iter()
            .map(|r| {
                let (title, text) = (field(r, "title").unwrap(), field(r, "text").unwrap());
                let (location, category) = (field(r, "location"), field(r, "category"));
                let report =
                    Report { title: &title, text: &text, location: location.as_deref(), category: category.as_deref() };
                (field(r, "group").unwrap(), Fingerprint::of(&report))
            })
            .collect();
        let mut pairs = 0;
        for (a, (group, fa)) in prints.iter().enumerate() {
            let size = prints.iter().filter(|(g, _)| g == group).count();
            if size < 2 {
                continue;
            }
            let k = 3.max(size - 1);
            for (b, (gb, fb)) in prints.iter().enumerate() {
                if b == a || gb != group {
                    continue;
                }
                let s = fa.score(fb);
                let rank = 1 + prints
                    .iter()
                    .enumerate()
                    .filter(|&(c, (gc, fc))| {
                        c != a && c != b && {
                            let t = fa.score(fc);
                            if gc == group { t > s } else { t >= s }
                        }
                    })
                    .count();
                assert!(rank <= k, "report {a} ranks its duplicate {b} at {rank}, beyond the top {k}");
                pairs += 1;
            }
        }
        assert!(pairs >= 40, "{pairs} pairs checked");
    }
}
