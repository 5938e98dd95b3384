//! Retention: closed cases written out as JSON lines (personal data masked unless asked for)
//! and, when asked, purged in small batches so that the server's commits go on between them;
//! what the purged cases counted for is kept as monthly figures, and every purge is recorded.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use serde_json::{Value, json};
use yishi_core::calendar::Zone;

use super::{Engine, EngineError};
use crate::store::{CaseDates, InstanceRow, MonthFigures, Purge, PurgeRecord, Store};

/// What an archive run does.
#[derive(Clone, Debug)]
pub struct ArchiveOptions {
    /// Cases closed (last changed) before this instant, Unix milliseconds.
    pub closed_before: i64,
    /// Remove the archived cases from the database (after they are written and synced).
    pub purge: bool,
    /// Keep personal data as it is instead of masking it.
    pub personal: bool,
    /// Cases per batch (one transaction each when purging).
    pub batch: u32,
    /// The zone months are counted in.
    pub zone: Zone,
    /// Where the archive goes, for the purge record.
    pub archive: String,
    /// Who runs it, for the purge record.
    pub actor: String,
}

/// What an archive run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveReport {
    pub cases: u64,
    pub events: u64,
    pub purged: u64,
    /// The purge record, when cases were purged.
    pub record: Option<i64>,
}

/// What a personal value is replaced by.
pub const MASK: &str = "***";

/// Replaces the values of `keys` wherever they appear as object keys in `v` (case data, event
/// payloads, data changes), keeping the shape.
pub fn mask_personal(v: &mut Value, keys: &BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                if keys.contains(k) && !x.is_null() {
                    *x = Value::String(MASK.into());
                } else {
                    mask_personal(x, keys);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|x| mask_personal(x, keys)),
        _ => {}
    }
}

/// `YYYY-MM` of `ms` in `zone`.
fn month(ms: i64, zone: Zone) -> String {
    zone.local(ms).map(|d| d.format("%Y-%m").to_string()).unwrap_or_default()
}

/// Figures of the given cases: started in the month they were created, ended in the month
/// they last changed.
pub fn figures_of<'a>(cases: impl IntoIterator<Item = &'a CaseDates>, zone: Zone) -> Vec<MonthFigures> {
    let mut by: BTreeMap<(String, String, String), MonthFigures> = BTreeMap::new();
    fn slot<'m>(
        by: &'m mut BTreeMap<(String, String, String), MonthFigures>,
        c: &CaseDates,
        m: String,
    ) -> &'m mut MonthFigures {
        by.entry((c.unit.clone(), c.workflow.clone(), m.clone())).or_insert_with(|| MonthFigures {
            unit: c.unit.clone(),
            workflow: c.workflow.clone(),
            month: m,
            ..MonthFigures::default()
        })
    }
    for c in cases {
        let started = slot(&mut by, c, month(c.created_at, zone));
        started.started += 1;
        if !c.merged {
            started.counts.add_case(&c.figures.clone().unwrap_or_default());
        }
        let ended = slot(&mut by, c, month(c.updated_at, zone));
        match c.status.as_str() {
            "completed" => ended.completed += 1,
            "cancelled" => ended.cancelled += 1,
            "failed" => ended.failed += 1,
            _ => {}
        }
    }
    by.into_values().filter(|f| f.started + f.completed + f.cancelled + f.failed > 0).collect()
}

fn dates_of(row: &InstanceRow) -> CaseDates {
    CaseDates {
        unit: row.unit.clone(),
        workflow: row.workflow.clone(),
        status: status_word(row),
        created_at: row.created_at,
        updated_at: row.updated_at,
        figures: Some(row.state.figures.clone()),
        merged: row.state.outcome.as_deref() == Some(yishi_core::runtime::MERGED),
    }
}

fn status_word(row: &InstanceRow) -> String {
    serde_json::to_value(row.state.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl Engine {
    /// Closed cases an archive with this cutoff would take, per workflow.
    pub async fn count_closed_before(&self, closed_before: i64) -> Result<BTreeMap<String, u64>, EngineError> {
        Ok(self.store.count_closed_before(closed_before).await?)
    }

    /// Writes closed cases with their whole history to `out`, one JSON object a line, and
    /// purges each batch once it is written and synced (when asked). `progress` is told how
    /// many cases each batch held.
    pub async fn archive(
        &self,
        opts: &ArchiveOptions,
        out: &mut std::io::BufWriter<std::fs::File>,
        mut progress: impl FnMut(u64),
    ) -> Result<ArchiveReport, EngineError> {
        let io = |e: std::io::Error| EngineError::Internal(format!("writing the archive: {e}"));
        let mut report = ArchiveReport::default();
        // Per version id: (number, content hash, personal keys).
        let mut versions: HashMap<i64, (i64, String, BTreeSet<String>)> = HashMap::new();
        let mut after = 0;
        loop {
            let rows = self.store.closed_before(opts.closed_before, after, opts.batch.max(1)).await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            for row in &rows {
                if let std::collections::hash_map::Entry::Vacant(slot) = versions.entry(row.version) {
                    let v = self.store.version(row.version).await?;
                    let personal = v.effective["personal"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    slot.insert((v.row.seq, v.row.hash.clone(), personal));
                }
                let (seq, hash, personal) = &versions[&row.version];
                let history = self.store.history(row.id).await?;
                report.events += history.len() as u64;
                let mut line = json!({
                    "id": row.id,
                    "unit": row.unit,
                    "workflow": row.workflow,
                    "version": seq,
                    "version_id": hash,
                    "status": row.state.status,
                    "outcome": row.state.outcome,
                    "data": row.state.data,
                    "created_at": row.created_at,
                    "updated_at": row.updated_at,
                    "history": history,
                });
                if !opts.personal {
                    mask_personal(&mut line["data"], personal);
                    mask_personal(&mut line["history"], personal);
                }
                serde_json::to_writer(&mut *out, &line).map_err(|e| io(e.into()))?;
                out.write_all(b"\n").map_err(io)?;
            }
            out.flush().map_err(io)?;
            report.cases += rows.len() as u64;
            if opts.purge {
                // Never remove what is not safely on disk.
                out.get_ref().sync_data().map_err(io)?;
                let dates: Vec<CaseDates> = rows.iter().map(dates_of).collect();
                let record = self
                    .store
                    .purge(&Purge {
                        ids: rows.iter().map(|r| r.id).collect(),
                        figures: figures_of(&dates, opts.zone),
                        closed_before: opts.closed_before,
                        archive: opts.archive.clone(),
                        actor: opts.actor.clone(),
                        at: self.now(),
                        record: report.record,
                    })
                    .await?;
                // This process's copies of the removed cases go with them.
                let mut slots = self.slots.lock().expect("slots lock");
                for r in &rows {
                    slots.remove(&r.id);
                }
                drop(slots);
                report.record = Some(record);
                report.purged += rows.len() as u64;
            }
            progress(rows.len() as u64);
        }
        Ok(report)
    }

    /// Cases per unit, workflow and month: those still stored and those purged, so that a
    /// month's figures stay the same after its cases are archived and purged.
    pub async fn monthly_figures(&self, zone: Zone) -> Result<Vec<MonthFigures>, EngineError> {
        let live = figures_of(&self.store.case_dates().await?, zone);
        let mut by: BTreeMap<(String, String, String), MonthFigures> = BTreeMap::new();
        for f in live.into_iter().chain(self.store.kept_figures().await?) {
            let e = by.entry((f.unit.clone(), f.workflow.clone(), f.month.clone())).or_insert_with(|| MonthFigures {
                unit: f.unit.clone(),
                workflow: f.workflow.clone(),
                month: f.month.clone(),
                ..MonthFigures::default()
            });
            e.started += f.started;
            e.completed += f.completed;
            e.cancelled += f.cancelled;
            e.failed += f.failed;
            e.counts.add(&f.counts);
        }
        Ok(by.into_values().collect())
    }

    /// Purges done, oldest first.
    pub async fn purges(&self) -> Result<Vec<PurgeRecord>, EngineError> {
        Ok(self.store.purges().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personal_values_are_masked_wherever_they_appear() {
        let keys: BTreeSet<String> = ["phone".into(), "name".into()].into();
        let mut v = json!({
            "data": { "phone": "13800138000", "title": "路灯坏了", "name": null },
            "history": [ { "type": "started", "data": { "name": "张三" } }, { "payload": { "phone": "1" } } ],
        });
        mask_personal(&mut v, &keys);
        assert_eq!(v["data"]["phone"], MASK);
        assert_eq!(v["data"]["title"], "路灯坏了");
        assert_eq!(v["data"]["name"], Value::Null, "nothing to hide stays null");
        assert_eq!(v["history"][0]["data"]["name"], MASK);
        assert_eq!(v["history"][1]["payload"]["phone"], MASK);
    }

    #[test]
    fn figures_count_starts_and_ends_in_their_own_months_in_the_zone() {
        let zone = Zone::parse("Asia/Shanghai").unwrap();
        // 2026-01-31 17:00 UTC is 2026-02-01 01:00 in Shanghai.
        let jan_31_utc_evening = 1_769_878_800_000;
        let mar = 1_772_960_000_000;
        let c = |status: &str, created, updated| CaseDates {
            unit: "u".into(),
            workflow: "u/w".into(),
            status: status.into(),
            created_at: created,
            updated_at: updated,
            figures: None,
            merged: false,
        };
        let f = figures_of(&[c("completed", jan_31_utc_evening, mar), c("active", mar, mar)], zone);
        let months: Vec<(&str, i64, i64)> = f.iter().map(|f| (f.month.as_str(), f.started, f.completed)).collect();
        assert_eq!(months, vec![("2026-02", 1, 0), ("2026-03", 1, 1)]);
    }
}
