//! Governance step kinds: intake (提), screen, meeting (议), sittings (例会), vote (决), review, implement (办),
//! escalate (吹哨报到), evaluate (评) and notify. Each validates its own settings at check time
//! and keeps to the engine's plugin invariants (see ARCHITECTURE.md).

mod common;
pub mod escalate;
pub mod evaluate;
pub mod implement;
pub mod intake;
pub mod meeting;
pub mod notify;
pub mod public_notice;
pub mod review;
pub mod screen;
pub mod sitting;
pub mod vote;

use std::sync::Arc;

use yishi_core::StepKind;

/// Every step kind of this crate, in a plain list.
pub fn kinds() -> Vec<Arc<dyn StepKind>> {
    vec![
        Arc::new(intake::IntakeKind),
        Arc::new(screen::ScreenKind),
        Arc::new(meeting::MeetingKind),
        Arc::new(sitting::SittingKind),
        Arc::new(sitting::AwaitSittingKind),
        Arc::new(vote::VoteKind),
        Arc::new(review::ReviewKind),
        Arc::new(public_notice::PublicNoticeKind),
        Arc::new(implement::ImplementKind),
        Arc::new(escalate::EscalateKind),
        Arc::new(evaluate::EvaluateKind),
        Arc::new(notify::NotifyKind),
    ]
}
