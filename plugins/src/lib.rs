//! Governance step kinds: intake (提), screen, meeting (议), vote (决), review, implement (办),
//! escalate (吹哨报到), evaluate (评) and notify.

use std::sync::Arc;

use yishi_engine::StepKind;

/// Every step kind of this crate, in a plain list.
pub fn kinds() -> Vec<Arc<dyn StepKind>> {
    Vec::new()
}
