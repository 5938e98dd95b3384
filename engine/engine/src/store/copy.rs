//! The tables a database copy moves (`yishi db copy`), in the order it writes them, each with
//! its columns in one fixed layout that every backend reads and writes: a row is a JSON array,
//! times in Unix milliseconds, documents as JSON. What is only a node's passing business
//! (leases on timers and deliveries, console sessions: people sign in again) is not copied.

/// How a column travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Int,
    /// A floating-point number.
    Real,
    Text,
    /// Unix milliseconds (`timestamptz` on PostgreSQL).
    Time,
    /// A document kept as written (data, state, event bodies, definitions, notices).
    Doc,
    /// A JSON array a query looks inside (active steps, a token's workflow roles).
    Array,
}

/// One table: its name, its columns, and how many of the first columns make its key (the
/// order rows are read in, and where a page of rows resumes).
#[derive(Debug)]
pub struct TableSpec {
    pub name: &'static str,
    pub columns: &'static [(&'static str, Col)],
    pub key: usize,
}

use Col::*;

/// Every table a copy moves, parents before children.
pub static TABLES: &[TableSpec] = &[
    TableSpec {
        name: "definitions",
        columns: &[
            ("id", Int),
            ("workflow", Text),
            ("seq", Int),
            ("hash", Text),
            ("sources", Doc),
            ("effective", Doc),
            ("created_at", Time),
            ("created_by", Text),
        ],
        key: 1,
    },
    TableSpec {
        name: "instances",
        columns: &[
            ("id", Int),
            ("unit", Text),
            ("workflow", Text),
            ("version", Int),
            ("status", Text),
            ("outcome", Text),
            ("active_steps", Array),
            ("data", Doc),
            ("state", Doc),
            ("revision", Int),
            ("last_seq", Int),
            ("created_at", Time),
            ("updated_at", Time),
        ],
        key: 1,
    },
    TableSpec {
        name: "events",
        columns: &[("instance_id", Int), ("seq", Int), ("at", Time), ("version", Int), ("type", Text), ("body", Doc)],
        key: 2,
    },
    TableSpec {
        name: "timers",
        columns: &[("instance_id", Int), ("token", Int), ("name", Text), ("step", Text), ("due_at", Time)],
        key: 3,
    },
    TableSpec {
        name: "idempotency",
        columns: &[
            ("key", Text),
            ("instance_id", Int),
            ("response", Text),
            ("created_at", Time),
            ("fingerprint", Text),
        ],
        key: 1,
    },
    TableSpec {
        name: "api_tokens",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("key_id", Text),
            ("secret_hash", Text),
            ("role", Text),
            ("scope", Text),
            ("acts_as", Array),
            ("created_at", Time),
            ("revoked_at", Time),
        ],
        key: 1,
    },
    TableSpec {
        name: "accounts",
        columns: &[
            ("id", Int),
            ("name", Text),
            ("password_hash", Text),
            ("role", Text),
            ("scope", Text),
            ("acts_as", Array),
            ("must_change", Int),
            ("failures", Int),
            ("locked_until", Time),
            ("disabled_at", Time),
            ("created_at", Time),
            ("changed_at", Time),
        ],
        key: 1,
    },
    TableSpec {
        name: "outbox",
        columns: &[
            ("id", Int),
            ("instance_id", Int),
            ("notice", Doc),
            ("attempts", Int),
            ("next_at", Time),
            ("delivered_at", Time),
            ("last_error", Text),
        ],
        key: 1,
    },
    TableSpec { name: "counters", columns: &[("name", Text), ("value", Int)], key: 1 },
    TableSpec {
        name: "monthly_figures",
        columns: &[
            ("unit", Text),
            ("workflow", Text),
            ("month", Text),
            ("started", Int),
            ("completed", Int),
            ("cancelled", Int),
            ("failed", Int),
            ("raised", Int),
            ("responded", Int),
            ("rated", Int),
            ("resolved", Int),
            ("satisfied", Int),
            ("overdue", Int),
            ("answers", Int),
            ("score_sum", Real),
        ],
        key: 3,
    },
    TableSpec {
        name: "purges",
        columns: &[
            ("id", Int),
            ("at", Time),
            ("closed_before", Time),
            ("cases", Int),
            ("archive", Text),
            ("actor", Text),
            ("max_id", Int),
        ],
        key: 1,
    },
];

impl TableSpec {
    /// The key columns, comma-separated.
    pub(crate) fn key_list(&self) -> String {
        self.columns[..self.key].iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    }

    /// The columns, comma-separated.
    pub(crate) fn column_list(&self) -> String {
        self.columns.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    }
}
